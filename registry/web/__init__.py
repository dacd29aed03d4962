"""The web console at /ui/: server-rendered pages over the same services and permission
checks as the admin API."""
