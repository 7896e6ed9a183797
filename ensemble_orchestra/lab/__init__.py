"""The lab: real Cobbler, IPMI BMC simulators and WebDAV storage on loopback.

Kept import-light: the BMC power hook runs ``python -m ensemble_orchestra.lab.power_hook``
on every IPMI chassis command, so nothing here may import Twisted.
"""
