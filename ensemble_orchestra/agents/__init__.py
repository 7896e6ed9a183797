"""What runs on the environment's machines: ``ensemble-admin initialize`` (machine 0, once), the machine agent
(every machine) and the provisioning agent (machine 0). They run from the archive ``origin`` delivers, with
Debian's python3 packages, as systemd services; they read only their own config files under /etc/ensemble.
"""
