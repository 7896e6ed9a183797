"""Service and unit names typed on the command line, checked before anything runs.

A name becomes part of a ZooKeeper path (``/services/<name>``, ``/units/<service>-<n>``): ``web/config`` would
read the service's settings node as a service, ``../x`` is refused by ZooKeeper's client. Every service was
deployed under a charm-style name, so refusing anything else refuses no real service or unit.
"""

from __future__ import annotations

import argparse
import re

from ..charm.url import is_valid_name

__all__ = ["service_name", "unit_name"]

_UNIT_NUMBER = re.compile(r"^[0-9]+$")  # not str.isdigit: that also takes other scripts' digits
_SERVICE_FORM = "lowercase letters, digits and dashes, like 'mysql'"


def service_name(text: str) -> str:
    """An argparse type: *text* if it can name a service (exit 2 otherwise)."""
    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a service name ({_SERVICE_FORM})")
    return text


def unit_name(text: str) -> str:
    """An argparse type: *text* if it can name a unit, ``<service>/<number>`` (exit 2 otherwise)."""
    service, slash, number = text.partition("/")
    if not slash or not is_valid_name(service) or not _UNIT_NUMBER.match(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not a unit name (<service>/<number>, like 'mysql/0')")
    return text
