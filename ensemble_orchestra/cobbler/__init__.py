"""Asynchronous Cobbler XML-RPC client (Twisted): one taxonomy of errors, 2.x/3.x field names, frugal calls.

Start with `CobblerClient`; docs/cobbler-client.md describes the API, its errors and its call costs.
"""

from .client import POWER_OPERATIONS, CobblerClient
from .errors import (
    CobblerAuthError,
    CobblerError,
    CobblerInvalidRequest,
    CobblerMethodMissing,
    CobblerNotFound,
    CobblerPowerError,
    CobblerTaskTimeout,
    CobblerTimeout,
    CobblerTLSError,
    CobblerTokenExpired,
    CobblerUnavailable,
)
from .fields import COBBLER2, COBBLER3, FieldMap, field_map_for
from .records import (
    CobblerVersion,
    DistroRecord,
    InterfaceRecord,
    PowerTask,
    ProfileRecord,
    SystemRecord,
)
from .tasks import DEFAULT_TASK_POLLING
from .transport import DEFAULT_RETRY, NO_RETRY, XmlRpcTransport

__all__ = [
    "COBBLER2",
    "COBBLER3",
    "DEFAULT_RETRY",
    "DEFAULT_TASK_POLLING",
    "NO_RETRY",
    "POWER_OPERATIONS",
    "CobblerAuthError",
    "CobblerClient",
    "CobblerError",
    "CobblerInvalidRequest",
    "CobblerMethodMissing",
    "CobblerNotFound",
    "CobblerPowerError",
    "CobblerTLSError",
    "CobblerTaskTimeout",
    "CobblerTokenExpired",
    "CobblerTimeout",
    "CobblerUnavailable",
    "CobblerVersion",
    "DistroRecord",
    "FieldMap",
    "InterfaceRecord",
    "PowerTask",
    "ProfileRecord",
    "SystemRecord",
    "XmlRpcTransport",
    "field_map_for",
]
