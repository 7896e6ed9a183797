"""Commissioning: a system's hardware, reported by a PXE-booted image and recorded on its Cobbler record.

report.py (the document the image sends, validated), checks.py (does it belong to the system),
record.py (how Cobbler keeps it). docs/commissioning.md describes the whole path.
"""

from .checks import ForgedReport, check_belongs
from .record import HARDWARE_KEY, Hardware, hardware_meta, hardware_of
from .report import FORMAT_VERSION, MAX_REPORT_BYTES, Disk, HardwareReport, Interface, MalformedReport, parse_report

__all__ = [
    "FORMAT_VERSION",
    "HARDWARE_KEY",
    "MAX_REPORT_BYTES",
    "Disk",
    "ForgedReport",
    "Hardware",
    "HardwareReport",
    "Interface",
    "MalformedReport",
    "check_belongs",
    "hardware_meta",
    "hardware_of",
    "parse_report",
]
