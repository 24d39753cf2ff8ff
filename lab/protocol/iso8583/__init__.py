"""ISO 8583 for UnionPay: the POS dialect (terminal <-> acquirer) and the CUPS switch dialect.

Domain brief section 5. The bitmap/field codec is pyiso8583; this package adds the dialect
field dictionaries (:mod:`.specs`), the envelope and TCP framing (:mod:`.framing`), the MACs of
field 64/128 (:mod:`.mac`), field 55 TLV (:mod:`.field55`), typed encode/decode and builders
(:mod:`.messages`), masked views (:mod:`.view`) and the POS terminal's helpers (:mod:`.terminal`).
Pure code: bytes in, bytes out.
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
from .terminal import (
    BALANCE_INQUIRY_CODE,
    UNMACED_RESPONSE_CODES,
    BatchTotals,
    decode_batch_totals,
    decode_working_keys,
    encode_batch_totals,
    encode_working_keys,
    key_check_value,
    settlement_request,
    verify_mac,
)
from .view import display_field, format_message, to_json

__all__ = [
    "BALANCE_INQUIRY_CODE",
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
    "UNMACED_RESPONSE_CODES",
    "BatchTotals",
    "CupsHeader",
    "Dialect",
    "FieldDef",
    "Iso8583Message",
    "StreamDeframer",
    "decode_batch_totals",
    "decode_message",
    "decode_working_keys",
    "display_field",
    "encode_batch_totals",
    "encode_message",
    "encode_working_keys",
    "field55_decode",
    "field55_encode",
    "field55_select",
    "format_message",
    "frame",
    "key_check_value",
    "pos_field60",
    "purchase_request",
    "response_to",
    "reversal_request",
    "settlement_request",
    "sign_on_request",
    "swap_tpdu",
    "switch_mab",
    "to_json",
    "verify_mac",
]
