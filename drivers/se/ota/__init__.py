"""Over-the-air administration of the emulated cards (the card side).

* :mod:`.sms_pp`: SMS-PP data download ENVELOPEs on a UICC (SCP80 + RAM, PoR), with the TAR table,
  OTA key sets and replay counters in the card image;
* :mod:`.http_admin`: GP Amendment B remote administration agent for microSD/eSE (and UICC),
  transport-agnostic (HTTP requests and responses as data);
* :mod:`.ram`: running remote APDU scripts on card-internal channels, shared by both.
"""

from .http_admin import (
    AdminAgent,
    AdminSessionError,
    AdminTrigger,
    HttpRequest,
    HttpResponse,
    RetryPolicy,
    ScriptStatus,
)
from .ram import run_apdus, run_on_channel, run_remote_apdus
from .sms_pp import (
    SmsPpDownloadHandler,
    attach_sms_pp,
    install_ota_keys,
    ota_config,
    provision_key_set,
    provision_tar,
)

__all__ = [
    "AdminAgent",
    "AdminSessionError",
    "AdminTrigger",
    "HttpRequest",
    "HttpResponse",
    "RetryPolicy",
    "ScriptStatus",
    "SmsPpDownloadHandler",
    "attach_sms_pp",
    "install_ota_keys",
    "ota_config",
    "provision_key_set",
    "provision_tar",
    "run_apdus",
    "run_on_channel",
    "run_remote_apdus",
]
