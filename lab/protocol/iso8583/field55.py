"""Field 55, ICC system related data: BER-TLV objects carried in a binary LLLVAR of up to 255 bytes.

Requests carry the reader's list (domain brief section 1, "Field 55 as sent by the reader" [S]);
responses carry the issuer authentication data 91 and the issuer scripts 71/72 (section 5).
The TLV codec itself is :mod:`paylab.lab.protocol.tlv`; this module only adds the field's limits
and the tag subsets a message type needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import Iso8583Error, ProtocolError
from ..tlv import Tlv
from ..tlv import decode as tlv_decode
from ..tlv import encode as tlv_encode

FIELD55_MAX_LEN = 255

REQUEST_TAGS: tuple[int, ...] = (
    0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A,
    0x82, 0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41,
)
"""Field 55 of an online request, in the reader's order (domain brief section 1 [S])."""

RESPONSE_TAGS: tuple[int, ...] = (0x91, 0x71, 0x72)
"""Field 55 of a response: issuer authentication data, scripts before/after the 2nd GENERATE AC."""

REVERSAL_TAGS: tuple[int, ...] = (0x95, 0x9F1E, 0x9F10, 0x9F36, 0xDF31)
"""Field 55 kept in a 0400 reversal: TVR, IFD serial, IAD, ATC, script results [M]."""


def field55_decode(value: bytes) -> list[Tlv]:
    """Parse field 55; a malformed TLV raises :class:`Iso8583Error` for ``field 55``."""
    try:
        return tlv_decode(bytes(value))
    except ProtocolError as exc:
        raise Iso8583Error(str(exc), field="field 55", offset=exc.offset) from exc


def field55_encode(objs: Iterable[Tlv]) -> bytes:
    """Serialise TLV objects for field 55; more than 255 bytes raises :class:`Iso8583Error`."""
    data = tlv_encode(list(objs))
    if len(data) > FIELD55_MAX_LEN:
        raise Iso8583Error(f"ICC data of {len(data)} bytes exceeds {FIELD55_MAX_LEN}", field="field 55")
    return data


def field55_select(value: bytes | Sequence[Tlv], tags: Iterable[int]) -> list[Tlv]:
    """The top-level objects of ``value`` whose tag is in ``tags``, in their original order."""
    objs = field55_decode(value) if isinstance(value, bytes | bytearray) else list(value)
    wanted = set(tags)
    return [obj for obj in objs if obj.tag in wanted]
