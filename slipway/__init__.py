"""Slipway application shell: configuration, database, HTTP assembly and CLI."""

__version__ = "0.1.0"
