"""GlobalPlatform secure channels: SCP02 (GP Card Specification v2.3 Annex E) and SCP03
(GP Card Specification v2.3 Amendment D), as pure sessions usable by the host and the card side.
"""

from .keys import GP_DEFAULT_TEST_KEY, StaticKeys
from .scp02 import Scp02Session
from .scp03 import Scp03Session
from .session import ChannelState, Role, SecureChannelSession, SecurityLevel

__all__ = [
    "GP_DEFAULT_TEST_KEY",
    "ChannelState",
    "Role",
    "Scp02Session",
    "Scp03Session",
    "SecureChannelSession",
    "SecurityLevel",
    "StaticKeys",
]
