"""The JSON API for agents, mounted at /api/v1/ (see fleet.api.api)."""
