"""The error tables, checked against the exact Fault texts captured from the lab's cobblerd 3.3.10 (and 2.x)."""

from __future__ import annotations

import xmlrpc.client

import pytest
from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.python.failure import Failure
from twisted.web import client as web_client

from ensemble_orchestra.cobbler.errors import (
    FAULT_TABLE,
    HTTP_STATUS_TABLE,
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
    error_from_failure,
    error_from_fault,
    error_from_http_status,
    redact,
)

CX = "<class 'cobbler.cexceptions.CX'>"
TOKEN = "86hIWglNSJYlYZI3vBKytrcXHRomnKKv8A=="

# (method, faultString exactly as the server sent it, expected class). 3.3.10 strings were captured on the
# lab (tests/integration/test_cobbler_client.py re-checks a few live); "2.x" ones come from Cobbler 2's source.
CAPTURED_FAULTS = [
    ("login", f"{CX}:'login failed (ensemble)'", CobblerAuthError),
    ("login", f"{CX}:'login failed: ensemble'", CobblerAuthError),  # 2.x
    ("xapi_object_edit", f"{CX}:'invalid token: {TOKEN}'", CobblerTokenExpired),
    (
        "xapi_object_edit",
        "<class 'ValueError'>:\"token\" did not have the correct format or type!",
        CobblerTokenExpired,
    ),
    ("sync", "<class 'ValueError'>:\"token\" did not have the correct format or type!", CobblerTokenExpired),
    ("xapi_object_edit", f"{CX}:'authorization failure for user ensemble'", CobblerAuthError),
    ("xapi_object_edit", f"{CX}:'internal error, unknown system name nosuch'", CobblerNotFound),
    ("get_system_handle", f"{CX}:'internal error, unknown system name nosuch'", CobblerNotFound),
    ("power_system", "<class 'AttributeError'>:'NoneType' object has no attribute 'power_type'", CobblerNotFound),
    ("get_task_status", f"{CX}:'no event with that id'", CobblerNotFound),
    ("no_such_method", f"{CX}:\"unknown remote method 'no_such_method'\"", CobblerMethodMissing),
    ("xapi_object_edit", f"{CX}:'unknown remote method'", CobblerMethodMissing),  # 2.x
    (
        "power_system",
        f"{CX}:'command failed (rc=1), please validate the physical setup and cobbler config'",
        CobblerPowerError,
    ),
    ("power_system", f"{CX}:'no power type set for system'", CobblerPowerError),
    (
        "power_system",
        f"{CX}:\"invalid power operation 'frob', expected on/off/status/reboot\"",
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        "<class 'ValueError'>:Profile with the name \"nosuchprofile\" is not existing",
        CobblerInvalidRequest,
    ),
    ("xapi_object_edit", "<class 'ValueError'>:Invalid mac address format (zz)", CobblerInvalidRequest),
    (
        "xapi_object_edit",
        "<class 'ValueError'>:MAC address duplicate found \"52:54:00:00:00:02\". "
        'Object with the conflict has the name "node002"',
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        "<class 'ipaddress.AddressValueError'>:Invalid IPv4 address format (notanip)",
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        "<class 'OSError'>:Invalid automatic installation template file location "
        "/lab/cobbler/var/lib/cobbler/templates/nosuch.preseed, file not found",
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        f"{CX}:'power management type must be one of: ack_manual,aliyun,alom,amt,apc,ipmilan'",
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        f"{CX}:\"It seems unwise to overwrite the object node001, try 'edit'\"",
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        '<class \'ValueError\'>:IP address duplicate found "10.0.0.2". Object with the conflict has the name "node002"',
        CobblerInvalidRequest,
    ),
    (
        "xapi_object_edit",
        "<class 'ValueError'>:DNS name duplicate found \"node002.lab.ensemble\". "
        'Object with the conflict has the name "node002"',
        CobblerInvalidRequest,
    ),
    ("find_system", "<class 'ValueError'>:calling find with no arguments", CobblerInvalidRequest),
    ("xapi_object_edit", f"{CX}:'internal error, unknown mgmtclass name nosuch'", CobblerNotFound),
    ("xapi_object_edit", f"{CX}:'internal error, unknown profile name nosuch'", CobblerNotFound),
    (
        "read_autoinstall_snippet",
        "<class 'OSError'>:Invalid automated installation snippet file location "
        "/lab/cobbler/var/lib/cobbler/snippets/nosuch, file not found",
        CobblerNotFound,
    ),
    ("xapi_object_edit", "<class 'ValueError'>:distribution \"nosuch\" not found", CobblerInvalidRequest),
    # From Cobbler's sources (3.3 power_manager, 2.x item_system), not provoked on the lab:
    ("power_system", f"{CX}:\"command succeeded (rc=0), but output ('?') was not understood\"", CobblerPowerError),
    ("modify_system", f"{CX}:'invalid profile name: nosuch'", CobblerInvalidRequest),  # 2.x
    ("modify_system", f"{CX}:'invalid format for MAC address (zz)'", CobblerInvalidRequest),  # 2.x
    ("modify_system", f"{CX}:'IP address duplicated: 10.0.0.2'", CobblerInvalidRequest),  # 2.x
    ("modify_system", f"{CX}:'kickstart not found: /var/lib/cobbler/kickstarts/x.ks'", CobblerInvalidRequest),  # 2.x
    ("modify_system", f"{CX}:'you need to have fence-agents installed'", CobblerInvalidRequest),
    # Server-side bugs and misuse with no meaning of their own: fatal, base class.
    ("power_system", "<class 'ValueError'>:not enough values to unpack (expected 2, got 1)", CobblerError),
    ("modify_system", "<class 'KeyError'>:'___NEW___system::bogus'", CobblerError),
    ("find_system", "<class 'AttributeError'>:'bool' object has no attribute 'startswith'", CobblerError),
]


@pytest.mark.parametrize(("method", "fault_string", "expected"), CAPTURED_FAULTS)
def test_each_captured_fault_maps_to_its_class(method: str, fault_string: str, expected: type) -> None:
    """Every real Fault text lands in exactly the intended class, named with the method."""
    error = error_from_fault(xmlrpc.client.Fault(1, fault_string), method)
    assert type(error) is expected
    assert error.method == method
    assert "<class" not in error.message  # Cobbler's wrapper is stripped


def test_every_table_rule_is_exercised_by_a_captured_fault() -> None:
    """No dead rules: each FAULT_TABLE row is the first match for at least one captured text."""
    first_match = [
        next((i for i, rule in enumerate(FAULT_TABLE) if rule.pattern.search(text)), None)
        for _, text, _ in CAPTURED_FAULTS
    ]
    missing = [rule.why for i, rule in enumerate(FAULT_TABLE) if i not in first_match]
    assert not missing, missing


def test_retryable_is_a_property_of_the_class() -> None:
    """Only unavailability is retryable; auth, not-found, invalid, TLS, power and token errors are not."""
    assert CobblerUnavailable.retryable
    for fatal in (
        CobblerError,
        CobblerAuthError,
        CobblerNotFound,
        CobblerInvalidRequest,
        CobblerMethodMissing,
        CobblerTokenExpired,
        CobblerTLSError,
        CobblerPowerError,
        CobblerTaskTimeout,
    ):
        assert not fatal.retryable, fatal


def test_token_echoed_by_cobbler_is_redacted() -> None:
    """Cobbler's 'invalid token: <token>' would leak a live session token into logs; it never does."""
    error = error_from_fault(xmlrpc.client.Fault(1, f"{CX}:'invalid token: {TOKEN}'"), "sync")
    assert TOKEN not in str(error)
    assert "invalid token: <redacted>" in str(error)


def test_known_secrets_are_redacted_from_any_fault() -> None:
    """A server that echoes the password (it does not today) still cannot leak it."""
    error = error_from_fault(
        xmlrpc.client.Fault(1, f"{CX}:'login failed (hunter2hunter2)'"), "login", ["hunter2hunter2"]
    )
    assert "hunter2hunter2" not in str(error)
    assert "hunter2hunter2" not in repr(error.args)


def test_event_log_passwords_are_redacted() -> None:
    """A power task's log copies the fence agent's stdin, password line included."""
    log = "power command input: action=on\nip=127.0.0.1\nusername=root\npassword=716996ebbd4b00e8\nipport=40713\n"
    cleaned = redact(log)
    assert "716996ebbd4b00e8" not in cleaned
    assert "password=<redacted>" in cleaned
    assert "ipport=40713" in cleaned


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (401, CobblerAuthError),
        (403, CobblerAuthError),
        (404, CobblerInvalidRequest),
        (405, CobblerInvalidRequest),
        (500, CobblerUnavailable),
        (502, CobblerUnavailable),
        (503, CobblerUnavailable),
        (302, CobblerError),
    ],
)
def test_http_status_table(code: int, expected: type) -> None:
    """Statuses from a front end (Apache) map by range; 5xx is retryable."""
    assert type(error_from_http_status(code, "login", "https://orchestra/cobbler_api")) is expected
    assert {row[2] for row in HTTP_STATUS_TABLE} <= {CobblerAuthError, CobblerInvalidRequest, CobblerUnavailable}


@pytest.mark.parametrize(
    ("exc", "request_sent"),
    [
        (net_error.ConnectionRefusedError(), False),
        (net_error.DNSLookupError(), False),
        (net_error.TCPTimedOutError(), False),
        (web_client.RequestNotSent(), False),
        (defer.TimeoutError(), None),
        (web_client.ResponseNeverReceived([Failure(net_error.ConnectionLost())]), None),
        (web_client.ResponseFailed([Failure(net_error.ConnectionDone())]), None),
        (ConnectionResetError(), None),
    ],
)
def test_transport_failures_are_unavailable(exc: BaseException, request_sent: bool | None) -> None:
    """Connection problems and timeouts are CobblerUnavailable; only connect failures prove nothing was sent."""
    error = error_from_failure(exc, "get_system", "http://127.0.0.1:1/RPC2", timeout=3)
    timed_out = isinstance(exc, defer.TimeoutError)
    assert type(error) is (CobblerTimeout if timed_out else CobblerUnavailable)
    assert isinstance(error, CobblerUnavailable) and error.retryable
    assert error.request_sent is request_sent


def test_unknown_exception_is_fatal() -> None:
    assert type(error_from_failure(RuntimeError("boom"), "x", "http://h/RPC2")) is CobblerError


def test_certificate_failure_is_a_fatal_tls_error() -> None:
    """An untrusted certificate must never be retried around."""
    from OpenSSL.SSL import Error as SSLError

    exc = web_client.ResponseNeverReceived([Failure(SSLError([("SSL routines", "", "certificate verify failed")]))])
    assert type(error_from_failure(exc, "login", "https://h/cobbler_api")) is CobblerTLSError
