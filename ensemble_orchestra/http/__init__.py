"""HTTP pieces treq lacks: an IAgent doing Digest (RFC 7616) and Basic authentication."""

from .digest import BytesBody, Credentials, HTTPAuthAgent, InsecureAuthRefused

__all__ = ["BytesBody", "Credentials", "HTTPAuthAgent", "InsecureAuthRefused"]
