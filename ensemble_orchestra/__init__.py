"""Ensemble's machine provider for Ubuntu Orchestra: bare-metal servers through Cobbler, IPMI and WebDAV."""

__version__ = "0.1.0"
