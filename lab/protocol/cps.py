"""EMV CPS-style data preparation for the paylab PBOC applet: DGIs, STORE DATA blocks, PBOC card data.

Pure code: a :class:`~paylab.lab.profiles.PbocProfile` (and an optional ODA chain) in, a list of
``(DGI, data, encrypt)`` out; no keys leave this module except inside DGIs flagged for DEK encryption.

**DGI format** (EMV CPS v1.1 [M]): ``DGI (2 bytes) | L | data`` with ``L`` one byte for 0-254 and
``FF`` + 2 bytes for 255-65535. STORE DATA (GP 2.3 11.11, brief section 3) carries DGIs with P1 b5b4 =
01 (``08``), b7b6 = 11 (``60``) when the DGIs are DEK-encrypted, b8 (``80``) on the last block; P2 is
the block number. A DGI longer than one block continues in the next STORE DATA command [M].

**The paylab PBOC DGI map.** [CPS] = EMV CPS numbering, [S] = public PBOC personalisation notes,
[M] = from memory of VSDC/PBOC practice, [paylab] = paylab's own choice (no public source):

======== =================================================================== ======= ===========
DGI      content                                                             enc.    source
======== =================================================================== ======= ===========
SSRR     record RR of SFI SS (1-10), value = template ``70``                 no      [CPS]
9102     contact SELECT response: FCI proprietary template ``A5`` (whole TLV) no      [S]
9103     contactless SELECT response: template ``A5``                        no      [paylab]
9104     contact GPO data: ``82`` AIP, ``94`` AFL                            no      [M]
9207     contactless (qPBOC) GPO data: ``82`` AIP, ``94`` AFL (fDDA records) no      [M][paylab]
0D01     card-internal data (TLVs): ``9F10`` IAD template                    no      [M][paylab]
         ``07 DKI CVN 03000000 alg-id``, ``9F51`` currency, ``9F6C`` CTQ,
         ``9F14``/``9F23`` offline limits, ``9F4F``/``DF4F`` log formats,
         ``DF71`` account kind (01 e-cash, 02 debit+e-cash, 03 credit+e-cash)
0E01     e-cash parameters (TLVs): ``9F79`` balance, ``9F77`` balance limit, no      [M][paylab]
         ``9F78`` single limit, ``9F6D`` reset threshold, ``9F74`` auth code
8000     MK-AC ‖ MK-MAC ‖ MK-ENC (3 × 16 bytes)                              yes     [CPS]
9000     their key check values (3 × 3 bytes; SM4 KCV over 16 zero bytes)   no      [CPS]
8010     offline PIN block, ISO 9564 format 2 ``2L PPPP..FF`` (8 bytes),     yes     [CPS][S]
         then ``80 00..`` to 16 bytes [paylab]
9010     PIN try limit ‖ PIN try counter (1 + 1 byte)                        no      [CPS][M order]
8201     ICC RSA private key CRT ``q⁻¹ mod p``                               yes     [CPS][M]
8202     CRT ``d mod (q-1)``                                                 yes     [CPS][M]
8203     CRT ``d mod (p-1)``                                                 yes     [CPS][M]
8204     CRT prime ``q``                                                     yes     [CPS][M]
8205     CRT prime ``p``                                                     yes     [CPS][M]
8301     ICC SM2 private key ``d`` (32 bytes), SM2 chains only               yes     [paylab]
======== =================================================================== ======= ===========

Every DGI to encrypt has a length that is a multiple of 16, so that the security domain's DEK
decryption works block by block for SCP02 (3DES, 8) and SCP03 (AES, 16) without padding rules: CRT
components are left-padded with zero bytes (the card reads them as integers) and the 8-byte PIN block
is followed by ISO/IEC 9797-1 method 2 padding (the card strips it). The security domain decrypts
each DGI value and forwards clear DGIs (``drivers/se/gp/security_domain.py``, GP 2.3 11.11.2.2).

**Record layout** (:func:`record_layout`), AFL entries ``SFI<<3 | first | last | #ODA``:

* SFI 1 record 1 (signed for ODA): 5A, 5F24, 5F25, 5F28, 5F34, 9F07, 9F0D/0E/0F, 8E, 9F08, 9F42, 9F44.
* SFI 1 record 2: 57, 5F20 (if any), 5F30, 8C CDOL1, 8D CDOL2, 9F14, 9F23.
* SFI 2 (only with an ODA chain): record 1 = 8F, 90, 9F32, 92; record 2 = 9F46, 9F47, 9F48, 9F49.
* Contact AFL ``08 01 02 01`` (+ ``10 01 02 00``); contactless AFL ``08 01 01 01`` + ``10 01 02 00``
  (5F24 is never in the last record a qPBOC reader reads [S]). SFI 11 and 12 are the card's
  transaction and load logs (9F4D ``0B0A``, DF4D ``0C0A``), written by the card, not personalised.
* Without an ODA chain the AIPs lose their SDA/DDA/CDA bits and the card approves no offline e-cash
  on the contactless interface (no fDDA possible) [paylab].
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import oda as oda_pkg
from .apdu import CommandApdu
from .crypto import sm2
from .crypto.primitives import kcv
from .errors import ProtocolError
from .oda.keys import Algorithm as OdaAlgorithm
from .tlv import Tlv, tlv

if TYPE_CHECKING:
    from ..profiles import PbocProfile

# -- DGI numbers -----------------------------------------------------------------------------------

DGI_FCI_CONTACT = 0x9102
DGI_FCI_CONTACTLESS = 0x9103
DGI_GPO_CONTACT = 0x9104
DGI_GPO_CONTACTLESS = 0x9207
DGI_INTERNAL = 0x0D01
DGI_ECASH = 0x0E01
DGI_CARD_KEYS = 0x8000
DGI_KEY_CHECK_VALUES = 0x9000
DGI_PIN_BLOCK = 0x8010
DGI_PIN_DATA = 0x9010
DGI_ICC_CRT = (0x8201, 0x8202, 0x8203, 0x8204, 0x8205)
"""q^-1 mod p, d mod (q-1), d mod (p-1), q, p [CPS][M]."""
DGI_ICC_SM2 = 0x8301
ENCRYPTED_DGIS = frozenset({DGI_CARD_KEYS, DGI_PIN_BLOCK, DGI_ICC_SM2, *DGI_ICC_CRT})

TAG_ACCOUNT_KIND = 0xDF71
"""[paylab] card-internal account kind in DGI 0D01: 01 e-cash, 02 debit+e-cash, 03 credit+e-cash."""
ACCOUNT_KIND_CODES = {"ecash": 0x01, "debit+ecash": 0x02, "credit+ecash": 0x03}

LOG_SFI = 11
LOAD_LOG_SFI = 12
LOG_RECORDS = 10
MAX_RECORD_SFI = 10
"""Personalised records live in SFI 1-10 (so DGIs 0D01/0E01 are never records)."""

STORE_DATA_DGI = 0x08
STORE_DATA_ENCRYPTED = 0x60
STORE_DATA_LAST = 0x80
DEFAULT_BLOCK_SIZE = 0xEF
"""Largest STORE DATA data field produced: 239 bytes leave room for SCP padding and an 8-byte C-MAC."""


class DgiError(ProtocolError):
    """Malformed DGI data (DGI number, length or truncated value); names the byte offset."""


class CpsError(ProtocolError):
    """Data preparation cannot proceed (e.g. an ODA chain certified other static data)."""


# -- DGI codec ---------------------------------------------------------------------------------------


def encode_dgi(dgi: int, data: bytes) -> bytes:
    """``DGI | L | data``; L is 1 byte up to 254 and ``FF HH LL`` from 255 bytes on (EMV CPS)."""
    if not isinstance(dgi, int) or not 0 <= dgi <= 0xFFFF:
        raise DgiError(f"DGI {dgi!r}", field="DGI", expected="0000..FFFF")
    data = bytes(data)
    if len(data) > 0xFFFF:
        raise DgiError(f"{len(data)} data bytes", field=f"DGI {dgi:04X}", expected="at most 65535")
    length = bytes([len(data)]) if len(data) < 0xFF else b"\xff" + len(data).to_bytes(2, "big")
    return dgi.to_bytes(2, "big") + length + data


def _parse_header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """``(dgi, length, value offset)`` at ``pos``, or None when the header is incomplete."""
    if len(data) - pos < 3:
        return None
    dgi = int.from_bytes(data[pos : pos + 2], "big")
    if data[pos + 2] != 0xFF:
        return dgi, data[pos + 2], pos + 3
    if len(data) - pos < 5:
        return None
    return dgi, int.from_bytes(data[pos + 3 : pos + 5], "big"), pos + 5


def split_dgis(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete DGIs at the start of ``data`` and the incomplete rest (a DGI continued in the next block)."""
    data = bytes(data)
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        header = _parse_header(data, pos)
        if header is None:
            break
        dgi, length, start = header
        if start + length > len(data):
            break
        found.append((dgi, data[start : start + length]))
        pos = start + length
    return found, data[pos:]


def decode_dgis(data: bytes) -> list[tuple[int, bytes]]:
    """Every DGI of ``data``; :class:`DgiError` with the offset if the last one is truncated."""
    found, rest = split_dgis(data)
    if rest:
        offset = len(bytes(data)) - len(rest)
        header = _parse_header(bytes(data), offset)
        what = "truncated DGI header" if header is None else f"DGI {header[0]:04X} truncated"
        raise DgiError(what, offset=offset, expected="a complete DGI | L | data")
    return found


def store_data_commands(dgis: Iterable[tuple[int, bytes, bool]], *,
                        block_size: int = DEFAULT_BLOCK_SIZE) -> list[CommandApdu]:
    """Plain STORE DATA commands (``80 E2 P1 blk#``, before secure messaging) carrying ``dgis``.

    Clear DGIs are packed together up to ``block_size`` bytes; each DGI to encrypt travels alone in one
    command with P1 b7b6 = 11, in *clear* here: the sender encrypts the DGI's value with the DEK before
    wrapping (the security domain decrypts DGI by DGI, so an encrypted DGI is never split). A clear DGI
    longer than a block continues in the next command.
    """
    if not 16 <= block_size <= 0xFF:
        raise CpsError(f"block size {block_size}", field="block_size", expected="16..255")
    blocks: list[tuple[bytes, bool]] = []
    pending = b""
    for dgi, data, encrypt in dgis:
        encoded = encode_dgi(dgi, data)
        if pending and (encrypt or len(pending) + len(encoded) > block_size):
            blocks.append((pending, False))
            pending = b""
        if encrypt:
            if len(encoded) > block_size:
                raise CpsError(f"DGI {dgi:04X} to encrypt is {len(encoded)} bytes", field="block_size",
                               expected=f"at most {block_size} (an encrypted DGI is never split)")
            blocks.append((encoded, True))
            continue
        pending += encoded
        while len(pending) > block_size:
            blocks.append((pending[:block_size], False))
            pending = pending[block_size:]
    if pending:
        blocks.append((pending, False))
    if len(blocks) > 256:
        raise CpsError(f"{len(blocks)} STORE DATA blocks", field="dgis", expected="at most 256 (P2 is one byte)")
    commands = []
    for number, (data, encrypted) in enumerate(blocks):
        p1 = STORE_DATA_DGI | (STORE_DATA_ENCRYPTED if encrypted else 0)
        if number == len(blocks) - 1:
            p1 |= STORE_DATA_LAST
        commands.append(CommandApdu(0x80, 0xE2, p1, number, data))
    return commands


# -- record layout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordLayout:
    """Where the card's records go and the AFLs that point at them."""

    records: dict[tuple[int, int], bytes]
    """``(sfi, record) -> template 70`` (whole TLV)."""
    afl_contact: bytes
    afl_contactless: bytes
    oda_records: tuple[tuple[int, int], ...]
    """The records the AFLs mark for offline data authentication, in AFL order."""

    def static_data(self) -> bytes:
        """Static data to be authenticated (EMV Book 3 10.3), what the ICC certificate signs over."""
        return oda_pkg.static_data_to_be_authenticated([(sfi, self.records[(sfi, rec)])
                                                         for sfi, rec in self.oda_records])


def _template(*objects: tuple[int, bytes | None]) -> bytes:
    return Tlv(0x70, b"".join(tlv(tag, value) for tag, value in objects if value is not None)).encode()


def _oda_record_objects(chain: oda_pkg.OdaChain | None) -> list[bytes]:
    if chain is None:
        return []
    objects = chain.data_objects()
    first = [(tag, objects.get(tag)) for tag in (0x8F, 0x90, 0x9F32, 0x92)]
    second = [(tag, objects.get(tag)) for tag in (0x9F46, 0x9F47, 0x9F48)] + [(0x9F49, oda_pkg.DEFAULT_DDOL)]
    return [_template(*first), _template(*second)]


def record_layout(profile: PbocProfile, *, oda: oda_pkg.OdaChain | None = None) -> RecordLayout:
    """The records of ``profile`` (with the ODA objects of ``oda`` in SFI 2) and both AFLs."""
    p = profile
    cardholder = p.cardholder_name.encode("ascii") if p.cardholder_name else None
    records: dict[tuple[int, int], bytes] = {
        (1, 1): _template(
            (0x5A, p.pan_bcd), (0x5F24, bytes.fromhex(p.expiry)), (0x5F25, bytes.fromhex(p.effective)),
            (0x5F28, p.country_code), (0x5F34, bytes.fromhex(p.psn)), (0x9F07, p.auc),
            (0x9F0D, p.iac_default), (0x9F0E, p.iac_denial), (0x9F0F, p.iac_online),
            (0x8E, p.effective_cvm_list), (0x9F08, p.app_version), (0x9F42, p.currency_code),
            (0x9F44, b"\x02"),
        ),
        (1, 2): _template(
            (0x57, p.track2), (0x5F20, cardholder), (0x5F30, bytes.fromhex("0" + p.service_code)),
            (0x8C, p.cdol1), (0x8D, p.cdol2),
            (0x9F14, bytes([p.card_risk.lower_consecutive_offline])),
            (0x9F23, bytes([p.card_risk.upper_consecutive_offline])),
        ),
    }
    afl_contact = bytes([1 << 3, 1, 2, 1])
    afl_contactless = bytes([1 << 3, 1, 1, 1])
    for number, record in enumerate(_oda_record_objects(oda), start=1):
        records[(2, number)] = record
    if oda is not None:
        afl_contact += bytes([2 << 3, 1, 2, 0])
        afl_contactless += bytes([2 << 3, 1, 2, 0])
    return RecordLayout(records, afl_contact, afl_contactless, oda_records=((1, 1),))


def oda_static_data(profile: PbocProfile) -> bytes:
    """The static data an ICC certificate for ``profile`` must be signed over (SFI 1 record 1)."""
    return record_layout(profile).static_data()


def oda_expiry(profile: PbocProfile) -> str:
    """The profile's expiry as the MMYY certificates use."""
    return profile.expiry[2:4] + profile.expiry[:2]


def generate_oda_chain(profile: PbocProfile, *, seed_or_rng: int | random.Random,
                       algorithm: OdaAlgorithm | None = None, **kwargs: object) -> oda_pkg.OdaChain:
    """A TEST ODA chain for ``profile``: RSA for 3DES cards and SM2 [M] for SM4 cards unless ``algorithm``
    says otherwise; the ICC certificate covers :func:`oda_static_data`. ``kwargs`` go to
    :meth:`~paylab.lab.protocol.oda.OdaChain.generate` (key sizes, CA index)."""
    chosen = algorithm or ("sm2" if profile.algorithm == "sm4" else "rsa")
    return oda_pkg.OdaChain.generate(profile.pan, oda_expiry(profile), seed_or_rng=seed_or_rng, algorithm=chosen,
                                     static_data=oda_static_data(profile), **kwargs)  # type: ignore[arg-type]


# -- preparation -------------------------------------------------------------------------------------------


def _fci_proprietary(profile: PbocProfile, pdol: bytes) -> bytes:
    items = [Tlv(0x50, profile.label.encode("ascii")), Tlv(0x87, bytes([profile.priority]))]
    if pdol:
        items.append(Tlv(0x9F38, pdol))
    items += [Tlv(0x5F2D, profile.language.encode("ascii")), Tlv(0x9F11, bytes([profile.issuer_code_table]))]
    if profile.preferred_name:
        items.append(Tlv(0x9F12, profile.preferred_name.encode("ascii")))
    log_entries = Tlv.build(0xBF0C, Tlv(0x9F4D, bytes([LOG_SFI, LOG_RECORDS])),
                            Tlv(0xDF4D, bytes([LOAD_LOG_SFI, LOG_RECORDS])))
    return Tlv.build(0xA5, *items, log_entries).encode()


def amount_n12(fen: int) -> bytes:
    """An amount in fen as n12 (6 BCD bytes), tags 9F02 / 9F79 / 9F77 ..."""
    if not 0 <= fen <= 999_999_999_999:
        raise CpsError(f"amount {fen}", field="amount", expected="0..999999999999 fen")
    return bytes.fromhex(f"{fen:012d}")


def pin_block(pin: str) -> bytes:
    """ISO 9564 format 2 plaintext PIN block ``2L PPPP..FF`` (8 bytes), the offline PIN of VERIFY."""
    if not (4 <= len(pin) <= 12 and pin.isdigit()):
        raise CpsError("PIN must be 4-12 digits", field="pin")
    return bytes.fromhex((f"2{len(pin):X}" + pin).ljust(16, "F"))


def iad_template(profile: PbocProfile) -> bytes:
    """IAD (9F10) fixed part ``07 DKI CVN 03 00 00 00 alg-id``; the card fills the CVR and adds the IDD."""
    return bytes([0x07, profile.dki, profile.cvn, 0x03, 0, 0, 0, profile.algorithm_id])


def _pad16(value: int) -> bytes:
    size = max(16, -(-((value.bit_length() + 7) // 8) // 16) * 16)
    return value.to_bytes(size, "big")


def _icc_key_dgis(chain: oda_pkg.OdaChain) -> list[tuple[int, bytes, bool]]:
    key = chain.icc_private
    if isinstance(key, sm2.Sm2KeyPair):
        return [(DGI_ICC_SM2, bytes(key.private), True)]
    numbers = key.to_cryptography().private_numbers()
    values = (numbers.iqmp, numbers.dmq1, numbers.dmp1, numbers.q, numbers.p)
    return [(dgi, _pad16(value), True) for dgi, value in zip(DGI_ICC_CRT, values, strict=True)]


def prepare_pboc(profile: PbocProfile, *, oda: oda_pkg.OdaChain | None = None) -> list[tuple[int, bytes, bool]]:
    """The personalisation DGIs of ``profile``: ``[(DGI, data, encrypt with the DEK), ...]``.

    ``oda`` is the card's TEST ODA chain (see :func:`generate_oda_chain`); its ICC certificate must have
    been signed over :func:`oda_static_data` of this profile, or :class:`CpsError` is raised.
    """
    layout = record_layout(profile, oda=oda)
    aip, aip_cl = profile.aip, profile.aip_contactless
    if oda is None:
        aip = bytes([aip[0] & ~0x61 & 0xFF, aip[1]])
        aip_cl = bytes([aip_cl[0] & ~0x61 & 0xFF, aip_cl[1]])
    elif oda.static_data != layout.static_data():
        raise CpsError("the ICC certificate was signed over other static data", field="oda",
                       expected="a chain generated with static_data=cps.oda_static_data(profile)")
    keys = profile.card_keys()
    kcv_alg = "3des" if profile.algorithm == "3des" else "sm4"
    out: list[tuple[int, bytes, bool]] = []
    for (sfi, rec), record in sorted(layout.records.items()):
        out.append(((sfi << 8) | rec, record, False))
    out += [
        (DGI_FCI_CONTACT, _fci_proprietary(profile, profile.contact_pdol), False),
        (DGI_FCI_CONTACTLESS, _fci_proprietary(profile, profile.pdol), False),
        (DGI_GPO_CONTACT, tlv(0x82, aip) + tlv(0x94, layout.afl_contact), False),
        (DGI_GPO_CONTACTLESS, tlv(0x82, aip_cl) + tlv(0x94, layout.afl_contactless), False),
        (DGI_INTERNAL, b"".join((
            tlv(0x9F10, iad_template(profile)), tlv(0x9F51, profile.currency_code), tlv(0x9F6C, profile.ctq),
            tlv(0x9F14, bytes([profile.card_risk.lower_consecutive_offline])),
            tlv(0x9F23, bytes([profile.card_risk.upper_consecutive_offline])),
            tlv(0x9F4F, profile.log_format), tlv(0xDF4F, profile.load_log_format),
            tlv(TAG_ACCOUNT_KIND, bytes([ACCOUNT_KIND_CODES[profile.account]])),
        )), False),
        (DGI_ECASH, b"".join((
            tlv(0x9F79, amount_n12(profile.ecash.balance)), tlv(0x9F77, amount_n12(profile.ecash.balance_limit)),
            tlv(0x9F78, amount_n12(profile.ecash.single_limit)),
            tlv(0x9F6D, amount_n12(profile.ecash.reset_threshold)),
            tlv(0x9F74, profile.ecash.issuer_auth_code.encode("ascii")),
        )), False),
        (DGI_CARD_KEYS, keys.mk_ac + keys.mk_mac + keys.mk_enc, True),
        (DGI_KEY_CHECK_VALUES, b"".join(kcv(k, kcv_alg) for k in (keys.mk_ac, keys.mk_mac, keys.mk_enc)), False),
    ]
    if profile.pin is not None:
        out += [(DGI_PIN_BLOCK, pin_block(profile.pin.offline_pin) + b"\x80" + bytes(7), True),
                (DGI_PIN_DATA, bytes([profile.pin.try_limit, profile.pin.try_limit]), False)]
    if oda is not None:
        out += _icc_key_dgis(oda)
    return out


def dgi_summary(dgis: Sequence[tuple[int, bytes, bool]]) -> list[str]:
    """One line per DGI for logs and reports: number, length, encrypted flag; never the data of a
    DGI to encrypt (keys, PIN, private key)."""
    lines = []
    for dgi, data, encrypt in dgis:
        shown = "<encrypted, hidden>" if encrypt else data[:16].hex().upper() + ("..." if len(data) > 16 else "")
        lines.append(f"{dgi:04X} L={len(data)} {shown}")
    return lines
