"""The dashboard's views: fleet page, session page, search, log-in."""
