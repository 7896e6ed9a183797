"""The lab: real Cobbler, IPMI BMC simulators and WebDAV storage on loopback.

Kept empty: ``programs/`` (the BMC power hook, run on every IPMI chassis command, and the other programs
other processes run) is imported through this package and must stay standard-library only.
"""
