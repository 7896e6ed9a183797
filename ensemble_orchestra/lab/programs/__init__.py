"""Programs that other processes run for the lab, and the little they share.

ipmi_sim runs the BMC power hook on every chassis command; the hook starts a booted system (a process or a
QEMU VM); the VM runs the init script as its ``/init``; the phone-home and Cobbler svc servers run as lab
servers (the latter under Cobbler's own virtualenv). So every module here imports only the standard library
and its siblings: no Twisted, no third-party package, nothing else of this project (``errors`` included).
``tests/unit/test_lab_imports.py`` checks it for every module, in a fresh interpreter.

The lab side (``ensemble_orchestra.lab``) imports from here, never the other way round.
"""
