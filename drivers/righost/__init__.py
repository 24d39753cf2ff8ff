"""Rig hosts over ssh: :class:`FabricRigHost` (fabric/paramiko, host keys pinned) and :class:`ManagedSshd`,
a private sshd on loopback that stands in for a rig host in tests and the simulated rig."""

from .fabric_host import FabricRigHost, run_on_hosts
from .sshd import ManagedSshd, ensure_test_user

__all__ = ["FabricRigHost", "ManagedSshd", "ensure_test_user", "run_on_hosts"]
