"""HTTP pieces treq lacks: Digest (RFC 7616) and Basic auth as an IAgent, replayable bodies, a verified Agent."""

from .agent import make_agent
from .body import BytesBody, read_body
from .cancel import is_cancellation
from .digest import Credentials, HTTPAuthAgent, InsecureAuthRefused

__all__ = [
    "BytesBody",
    "Credentials",
    "HTTPAuthAgent",
    "InsecureAuthRefused",
    "is_cancellation",
    "make_agent",
    "read_body",
]
