"""Store maintenance run from cron: reconcile, purge, reprice.

Each job is a service here, tested on its own; the management commands of the
same names only parse arguments, call it and print its summary. Every job
works in bounded batches, each its own short transaction, and decides row by
row with a condition checked inside the write (a conditional ``UPDATE``, a
locked re-check), so it is idempotent and safe while agents write and while
another copy of it runs.
"""
