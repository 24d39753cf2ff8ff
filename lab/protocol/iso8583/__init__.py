"""ISO 8583 for UnionPay: the POS dialect (terminal <-> acquirer) and the CUPS switch dialect.

Domain brief section 5. The bitmap/field codec is pyiso8583; this package adds the dialect
field dictionaries (:mod:`.specs`), the envelope and TCP framing (:mod:`.framing`), the MACs of
field 64/128 (:mod:`.mac`), field 55 TLV (:mod:`.field55`), typed encode/decode and builders
(:mod:`.messages`) and masked views (:mod:`.view`). Pure code: bytes in, bytes out.
"""

from __future__ import annotations

from .field55 import (
    REQUEST_TAGS,
    RESPONSE_TAGS,
    REVERSAL_TAGS,
    field55_decode,
    field55_encode,
    field55_select,
)
from .framing import DEFAULT_POS_HEADER, DEFAULT_TPDU, CupsHeader, StreamDeframer, frame, swap_tpdu
from .mac import SWITCH_MAB_ELEMENTS, switch_mab
from .messages import (
    MTI_NAMES,
    RESPONSE_CODES,
    Iso8583Message,
    decode_message,
    encode_message,
    pos_field60,
    purchase_request,
    response_to,
    reversal_request,
    sign_on_request,
)
from .specs import DIALECTS, FIELDS, MAC_FIELD, SPECS, Dialect, FieldDef
from .view import display_field, format_message, to_json

__all__ = [
    "DEFAULT_POS_HEADER",
    "DEFAULT_TPDU",
    "DIALECTS",
    "FIELDS",
    "MAC_FIELD",
    "MTI_NAMES",
    "REQUEST_TAGS",
    "RESPONSE_CODES",
    "RESPONSE_TAGS",
    "REVERSAL_TAGS",
    "SPECS",
    "SWITCH_MAB_ELEMENTS",
    "CupsHeader",
    "Dialect",
    "FieldDef",
    "Iso8583Message",
    "StreamDeframer",
    "decode_message",
    "display_field",
    "encode_message",
    "field55_decode",
    "field55_encode",
    "field55_select",
    "format_message",
    "frame",
    "pos_field60",
    "purchase_request",
    "response_to",
    "reversal_request",
    "sign_on_request",
    "swap_tpdu",
    "switch_mab",
    "to_json",
]
