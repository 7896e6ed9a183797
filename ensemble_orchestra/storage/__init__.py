"""The provider's file storage: WebDAV (Orchestra's Apache mod_dav) behind ``IFileStorage``."""

from ..http.agent import make_agent
from .errors import FileNotFound, StorageAuthError, StorageError, StorageTLSError, StorageUnavailable
from .webdav import DEFAULT_TIMEOUT, EXCLUSIVE_ROOT, WebDAVStorage, open_webdav_storage

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXCLUSIVE_ROOT",
    "FileNotFound",
    "StorageAuthError",
    "StorageError",
    "StorageTLSError",
    "StorageUnavailable",
    "WebDAVStorage",
    "make_agent",
    "open_webdav_storage",
]
