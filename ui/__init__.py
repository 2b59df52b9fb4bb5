"""The web interface (issue 15): server-rendered pages over the same service functions as /api/v1."""
