"""``fleet-follow``: a sidecar that mirrors an agent's own store into a remote Fleet.

The readers are the importers' (``sessions.importers``); this package adds
the other writer -- the JSON API (``remote``) -- and the polling around it:
the cursor (``state``), the retries (``transport``), one pass and the loop
(``follower``) and the command (``cli``). It opens no database: see ``cli``.
"""
