"""EMV / PBOC 3.0 application cryptography: key derivation, cryptograms, ARPC, issuer script MAC.

Constructions (domain brief section 2; EMV 4.x Book 2 Annex A1 and section 8; JR/T 0025):

* ICC master key, EMV A1.4.1 Option A: 3DES ``3DES_IMK(Y) || 3DES_IMK(Y ^ FF*8)``;
  SM4 ``SM4_IMK(Y || Y ^ FF*8)``.
* PBOC session key: 3DES ``3DES_MK(00*6 || ATC) || 3DES_MK(00*6 || ATC ^ FFFF)``;
  SM4 ``SM4_MK(00*6 || ATC || 00*6 || ATC ^ FFFF)``.
* EMV common session key, A1.3.1 (3DES only): ``3DES_MK(R0 R1 F0 R3..R7) || 3DES_MK(R0 R1 0F R3..R7)``.
* AC: 3DES ISO/IEC 9797-1 MAC algorithm 3, padding method 2; SM4 CBC-MAC, IV 0, padding method 2,
  leftmost 8 bytes.
* ARPC method 1 (8.2.1): 3DES ``3DES_K(ARQC ^ (ARC || 00*6))``; SM4 [M] leftmost 8 bytes of
  ``SM4_K((ARQC ^ (ARC || 00*6)) || 00*8)``.
* ARPC method 2 (8.2.2): leftmost 4 bytes of the AC MAC (3DES alg 3, or SM4 CBC-MAC [M]) over
  ``ARQC || CSU || proprietary authentication data``.
* Issuer script MAC (9.2.1): leftmost 4 bytes of the same MAC over
  ``CLA INS P1 P2 Lc || ATC || ARQC || data`` (SM4 form [M]).

Y is the rightmost 16 digits of PAN||PSN, left-padded with zeros, as 8 BCD bytes (EMV A1.4.1).
Derived 3DES keys get odd DES parity (as HSMs and pyemv return them); DES ignores the parity bits,
so key check values and cryptograms do not depend on it. SM4 keys are used as derived.

The key an ARPC is computed with depends on the scheme: PBOC uses the AC session key (brief
section 8, pitfall 2), the generic EMV vector uses the ICC master key; :data:`CVN_PROFILES` records
the choice per Cryptogram Version Number. The ARC is passed as the bytes that go into tag 8A, so an
ASCII response code "00" is ``b"00"`` (``3030``), not ``0000``.

Every wrong-sized input raises :class:`CryptoError` naming the argument; a malformed Issuer
Application Data (tag 9F10) raises :class:`ProtocolError`.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ..errors import CryptoError, ProtocolError
from .mac import iso9797_mac_alg3, sm4_cbc_mac
from .primitives import kcv, sm4_encrypt, tdes_encrypt, xor

Alg = Literal["3des", "sm4"]
SessionMethod = Literal["pboc", "emv-csk"]

KEY_LENGTH = 16
"""Every EMV/PBOC key here is 16 bytes: a double-length 3DES key (K1||K2) or an SM4 key."""

_PAN_RE = re.compile(r"[0-9]{1,19}")
_PSN_RE = re.compile(r"[0-9]{1,2}")


# -- input checks -------------------------------------------------------------------------------


def _check_alg(alg: str) -> None:
    if alg not in ("3des", "sm4"):
        raise CryptoError(f"alg must be '3des' or 'sm4', got {alg!r}")


def _check_len(name: str, value: bytes, *lengths: int) -> None:
    if not isinstance(value, bytes | bytearray):
        raise CryptoError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise CryptoError(f"{name} must be {want} bytes, got {len(value)}")


def _check_key(name: str, key: bytes) -> None:
    _check_len(name, key, KEY_LENGTH)


def _odd_parity(key: bytes) -> bytes:
    """Set the least significant bit of every byte so that each byte has odd parity (DES keys)."""
    return bytes((b & 0xFE) | ((bin(b & 0xFE).count("1") + 1) & 1) for b in key)


# -- key derivation -----------------------------------------------------------------------------


def pan_psn_block(pan: str, psn: str | None = "00") -> bytes:
    """Y of EMV Book 2 A1.4.1: the rightmost 16 digits of PAN||PSN, left-padded with 0, as 8 BCD bytes.

    ``pan`` is the decimal PAN (tag 5A, up to 19 digits); trailing ``F`` padding nibbles (tag 5A is
    format cn) are ignored. ``psn`` is the PAN Sequence Number (tag 5F34, n2) as 2 digits; one digit
    is left-padded (``"1"`` = ``"01"``); ``None`` means the card has no PSN and ``"00"`` is used
    (EMV A1.4.1).
    """
    if not isinstance(pan, str):
        raise CryptoError(f"pan must be a str of digits, got {type(pan).__name__}")
    digits = pan.rstrip("Ff")
    if not _PAN_RE.fullmatch(digits):
        raise CryptoError(f"pan must be 1 to 19 decimal digits, got {pan!r}")
    if psn is None:
        psn = "00"
    if not isinstance(psn, str) or not _PSN_RE.fullmatch(psn):
        raise CryptoError(f"psn must be 2 decimal digits (or None), got {psn!r}")
    return bytes.fromhex((digits + psn.rjust(2, "0"))[-16:].rjust(16, "0"))


def derive_icc_master_key(imk: bytes, pan: str, psn: str | None, alg: Alg = "3des") -> bytes:
    """ICC master key from the issuer master key (EMV Book 2 A1.4.1 Option A; JR/T 0025.17 for SM4).

    3DES: ``3DES_IMK(Y) || 3DES_IMK(Y ^ FF*8)`` with odd parity. SM4: ``SM4_IMK(Y || Y ^ FF*8)``, one
    16-byte block. Option A and Option B agree for PANs of up to 16 digits; Option B (SHA-1 for
    longer PANs) is not implemented.
    """
    _check_alg(alg)
    _check_key("imk", imk)
    y = pan_psn_block(pan, psn)
    block = y + xor(y, b"\xff" * 8)
    if alg == "3des":
        # ECB over the two 8-byte halves = the two independent 3DES encryptions of Option A.
        return _odd_parity(tdes_encrypt(imk, block))
    return sm4_encrypt(imk, block)


def derive_pboc_session_key(mk: bytes, atc: bytes, alg: Alg = "3des") -> bytes:
    """PBOC session key from the ATC (JR/T 0025; domain brief section 2 table).

    3DES: ``3DES_MK(00*6 || ATC) || 3DES_MK(00*6 || ATC ^ FFFF)`` with odd parity.
    SM4: ``SM4_MK(00*6 || ATC || 00*6 || ATC ^ FFFF)``. Both encrypt the same 16 bytes in ECB mode,
    as two 8-byte blocks or as one 16-byte block. Also used for the MAC and ENC session keys, from
    MK_MAC and MK_ENC.
    """
    _check_alg(alg)
    _check_key("mk", mk)
    _check_len("atc", atc, 2)
    block = bytes(6) + bytes(atc) + bytes(6) + xor(bytes(atc), b"\xff\xff")
    if alg == "3des":
        return _odd_parity(tdes_encrypt(mk, block))
    return sm4_encrypt(mk, block)


def derive_emv_csk(mk: bytes, r: bytes) -> bytes:
    """EMV common session key (EMV Book 2 A1.3.1), 3DES only.

    ``3DES_MK(R0 R1 F0 R3..R7) || 3DES_MK(R0 R1 0F R3..R7)`` with odd parity. For the AC session key
    R = ATC || 00*6 (see :func:`derive_ac_session_key`); other uses pass another 8-byte R (e.g. the
    ARQC for secure messaging keys).
    """
    _check_key("mk", mk)
    _check_len("r", r, 8)
    left = bytes(r[:2]) + b"\xf0" + bytes(r[3:])
    right = bytes(r[:2]) + b"\x0f" + bytes(r[3:])
    return _odd_parity(tdes_encrypt(mk, left + right))


def derive_ac_session_key(mk: bytes, atc: bytes, method: SessionMethod, alg: Alg = "3des") -> bytes:
    """AC session key by session method: ``"pboc"`` (ATC derivation) or ``"emv-csk"`` (R = ATC||00*6)."""
    _check_alg(alg)
    if method == "pboc":
        return derive_pboc_session_key(mk, atc, alg)
    if method == "emv-csk":
        if alg != "3des":
            raise CryptoError("the EMV common session key derivation is defined for 3DES only, not SM4")
        _check_len("atc", atc, 2)
        return derive_emv_csk(mk, bytes(atc) + bytes(6))
    raise CryptoError(f"method must be 'pboc' or 'emv-csk', got {method!r}")


# -- cryptograms --------------------------------------------------------------------------------


def generate_ac(sk: bytes, data: bytes, alg: Alg = "3des") -> bytes:
    """Application cryptogram (ARQC/TC/AAC), 8 bytes (EMV Book 2 8.1.2 and A1.2; JR/T 0025.17).

    3DES: ISO/IEC 9797-1 MAC algorithm 3 with padding method 2 (``80 00..``).
    SM4: SM4 CBC-MAC, IV 0, padding method 2 to 16 bytes, leftmost 8 bytes.
    ``data`` is the concatenated CDOL1 data, e.g. :func:`ac_input`.
    """
    _check_alg(alg)
    _check_key("sk", sk)
    if not isinstance(data, bytes | bytearray):
        raise CryptoError(f"data must be bytes, got {type(data).__name__}")
    if alg == "3des":
        return iso9797_mac_alg3(sk, bytes(data), padding="m2")
    return sm4_cbc_mac(sk, bytes(data), padding="m2")[:8]


def arpc_method1(key: bytes, arqc: bytes, arc: bytes, alg: Alg = "3des") -> bytes:
    """ARPC method 1 (EMV Book 2 8.2.1), 8 bytes; tag 91 is then ARPC || ARC.

    3DES: ``3DES_K(ARQC ^ (ARC || 00*6))``.
    SM4 [M]: the same 8-byte value ``ARQC ^ (ARC || 00*6)`` is extended with ``00*8`` to one SM4
    block and encrypted; the ARPC is the leftmost 8 bytes. That keeps tag 91 and EXTERNAL
    AUTHENTICATE (``Lc = 0A``) the same size as with 3DES. The brief marks the SM4 form [M]; check it
    against a real SM4 card or the JR/T 0025.17 text before relying on it.

    ``key`` is the AC session key for PBOC (pitfall 2) or the ICC master key where the scheme says so
    (:class:`CvnProfile.arpc_key`). ``arc`` is the 2-byte authorisation response code exactly as in
    tag 8A, e.g. ``b"00"`` = ``3030``.
    """
    _check_alg(alg)
    _check_key("key", key)
    _check_len("arqc", arqc, 8)
    _check_len("arc", arc, 2)
    y = xor(bytes(arqc), bytes(arc) + bytes(6))
    if alg == "3des":
        return tdes_encrypt(key, y)
    return sm4_encrypt(key, y + bytes(8))[:8]


def arpc_method2(
    key: bytes, arqc: bytes, csu: bytes, prop_auth_data: bytes = b"", alg: Alg = "3des"
) -> bytes:
    """ARPC method 2 (EMV Book 2 8.2.2), 4 bytes; tag 91 is then ARPC || CSU || prop. auth. data.

    3DES: the leftmost 4 bytes of the ISO/IEC 9797-1 algorithm 3 MAC (padding method 2) over
    ``ARQC || CSU || proprietary authentication data`` with the AC session key.
    SM4 [M]: the leftmost 4 bytes of the SM4 CBC-MAC over the same data.
    ``csu`` is the 4-byte Card Status Update; ``prop_auth_data`` is 0 to 8 bytes.
    """
    _check_alg(alg)
    _check_key("key", key)
    _check_len("arqc", arqc, 8)
    _check_len("csu", csu, 4)
    _check_len("prop_auth_data", prop_auth_data, *range(9))
    data = bytes(arqc) + bytes(csu) + bytes(prop_auth_data)
    if alg == "3des":
        return iso9797_mac_alg3(key, data, padding="m2")[:4]
    return sm4_cbc_mac(key, data, padding="m2")[:4]


def issuer_script_mac(
    mac_sk: bytes,
    command_header_and_lc: bytes,
    atc: bytes,
    arqc: bytes,
    data: bytes,
    alg: Alg = "3des",
) -> bytes:
    """Issuer script command MAC, 4 bytes (EMV Book 2 9.2.1; JR/T 0025; brief section 2 [S, key M]).

    MAC input: ``CLA INS P1 P2 Lc || ATC || ARQC || data`` where Lc already counts the 4 MAC bytes
    (Lc = len(data) + 4, as sent on the wire; e.g. ``04 DA 9F77 0A`` for a 6-byte PUT DATA value).
    3DES: ISO/IEC 9797-1 algorithm 3, padding method 2; SM4 [M]: SM4 CBC-MAC, padding method 2.
    ``mac_sk`` is the MAC session key: :func:`derive_pboc_session_key` of MK_MAC with the ATC.
    """
    _check_alg(alg)
    _check_key("mac_sk", mac_sk)
    _check_len("command_header_and_lc", command_header_and_lc, 5)
    _check_len("atc", atc, 2)
    _check_len("arqc", arqc, 8)
    if not isinstance(data, bytes | bytearray):
        raise CryptoError(f"data must be bytes, got {type(data).__name__}")
    lc = command_header_and_lc[4]
    if lc != len(data) + 4:
        raise CryptoError(
            f"command_header_and_lc: Lc is {lc:#04x} but data is {len(data)} bytes "
            f"(Lc must be len(data) + 4 = {len(data) + 4:#04x}, the MAC included)"
        )
    mac_input = bytes(command_header_and_lc) + bytes(atc) + bytes(arqc) + bytes(data)
    if alg == "3des":
        return iso9797_mac_alg3(mac_sk, mac_input, padding="m2")[:4]
    return sm4_cbc_mac(mac_sk, mac_input, padding="m2")[:4]


# -- AC input and Issuer Application Data --------------------------------------------------------

AC_INPUT_TAGS: tuple[tuple[int, int], ...] = (
    (0x9F02, 6),  # Amount, Authorised
    (0x9F03, 6),  # Amount, Other
    (0x9F1A, 2),  # Terminal Country Code
    (0x95, 5),  # Terminal Verification Results
    (0x5F2A, 2),  # Transaction Currency Code
    (0x9A, 3),  # Transaction Date
    (0x9C, 1),  # Transaction Type
    (0x9F37, 4),  # Unpredictable Number
    (0x82, 2),  # Application Interchange Profile
    (0x9F36, 2),  # Application Transaction Counter
)
"""(tag, length) of the AC input before the CVR, in order (brief section 2; EMV Book 2 8.1.1)."""


def ac_input(values: Mapping[int, bytes], cvr: bytes) -> bytes:
    """The AC input data: 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36 followed by the CVR.

    ``values`` maps each tag (as an int, e.g. ``0x9F02``) to its value; extra tags are ignored.
    ``cvr`` is the 4-byte CVR as carried in IAD bytes 4-7 (length byte ``03`` included), i.e.
    :attr:`Iad.cvr`. Source: both public examples of the brief; EMV Book 2 8.1.1 recommended set.
    """
    parts = []
    for tag, length in AC_INPUT_TAGS:
        if tag not in values:
            raise CryptoError(f"ac_input: tag {tag:02X} missing from values")
        value = values[tag]
        _check_len(f"ac_input tag {tag:02X}", value, length)
        parts.append(bytes(value))
    _check_len("cvr", cvr, 4)
    parts.append(bytes(cvr))
    return b"".join(parts)


ALGORITHM_IDS: Mapping[int, Alg] = MappingProxyType({0x01: "3des", 0x04: "sm4"})
"""IAD byte 8, the algorithm identifier (算法标识) [M for the values].

The byte itself is [S: JR/T 0025 IAD layout as quoted on cnblogs istar/p/7021893: length 07, DKI,
CVN, CVR(4), algorithm identifier(1), then an optional IDD length and 1-15 IDD bytes]. Public
traces of 3DES-era cards show 01; 2024 traces of CVN 01 cards show 04. 01 = 3DES and 04 = SM4 is
an inference from that.
"""


@dataclass(frozen=True)
class Iad:
    """PBOC Issuer Application Data (tag 9F10), JR/T 0025 layout (brief section 1).

    ``07 | DKI | CVN | CVR (03 xx xx xx) | algorithm id`` then optionally ``IDD length | IDD``.
    ``length`` is the first byte (7 for PBOC; 6 = the VIS form without algorithm identifier).
    ``cvr`` keeps its length byte, so it is what :func:`ac_input` appends.
    """

    raw: bytes
    length: int
    dki: int
    cvn: int
    cvr: bytes
    algorithm_id: int | None = None
    idd: bytes | None = None

    @property
    def algorithm(self) -> Alg | None:
        """The algorithm the algorithm identifier names, if present and known ([M], see ALGORITHM_IDS)."""
        if self.algorithm_id is None:
            return None
        return ALGORITHM_IDS.get(self.algorithm_id)


def parse_iad(raw: bytes) -> Iad:
    """Parse a PBOC IAD (tag 9F10 value); :class:`ProtocolError` (field ``tag 9F10``) if malformed."""
    where = "tag 9F10"
    if not isinstance(raw, bytes | bytearray):
        raise ProtocolError(f"IAD must be bytes, got {type(raw).__name__}", field=where)
    raw = bytes(raw)
    if len(raw) > 32:
        raise ProtocolError(f"IAD is {len(raw)} bytes", field=where, expected="at most 32 bytes")
    if not raw:
        raise ProtocolError("IAD is empty", field=where, offset=0, expected="length byte 06 or 07")
    length = raw[0]
    if length not in (6, 7):
        raise ProtocolError(
            f"IAD length byte is {length:#04x}", field=where, offset=0, expected="06 or 07"
        )
    if len(raw) < 1 + length:
        raise ProtocolError(
            f"IAD is {len(raw)} bytes, shorter than its length byte says",
            field=where, offset=len(raw), expected=f"{1 + length} bytes",
        )
    cvr = raw[3:7]
    if cvr[0] != 0x03:
        raise ProtocolError(f"CVR length byte is {cvr[0]:#04x}", field=where, offset=3, expected="03")
    algorithm_id = raw[7] if length == 7 else None
    rest = raw[1 + length :]
    idd = None
    if rest:
        idd_len = rest[0]
        if not 1 <= idd_len <= 15 or len(rest) != 1 + idd_len:
            raise ProtocolError(
                f"issuer discretionary data length byte {idd_len:#04x} with {len(rest) - 1} bytes after it",
                field=where, offset=1 + length, expected="a length of 1-15 matching the remaining bytes",
            )
        idd = rest[1:]
    return Iad(
        raw=raw, length=length, dki=raw[1], cvn=raw[2], cvr=cvr, algorithm_id=algorithm_id, idd=idd
    )


# -- Cryptogram Version Numbers -----------------------------------------------------------------


@dataclass(frozen=True)
class CvnProfile:
    """What a Cryptogram Version Number selects (how the backend verifies and answers)."""

    cvn: int
    session_method: SessionMethod
    alg: Alg
    arpc_method: Literal[1, 2]
    arpc_key: Literal["sk", "mk"]
    source: str


CVN_PROFILES: Mapping[int, CvnProfile] = MappingProxyType({
    0x01: CvnProfile(
        0x01, "pboc", "3des", 1, "sk",
        "PBOC standard CVN [S: brief section 1 trace; derivations brief section 2]. SM4 cards keep "
        "CVN 01 and say SM4 in IAD byte 8 (algorithm id 04) [M]; use alg_for_iad.",
    ),
    0x17: CvnProfile(
        0x17, "pboc", "3des", 1, "sk",
        "[M] seen in public qPBOC field-55 traces (9F10 07 01 17 03..); assumed to use the CVN 01 "
        "key derivation. Its AC input may be a reduced set (cf. Visa CVN 17): the caller builds it.",
    ),
    0x12: CvnProfile(
        0x12, "emv-csk", "3des", 2, "sk",
        "Visa CVN 18 [S: pyemv cvn.VisaCVN18]: EMV common session key with R = ATC||00*6, ARPC "
        "method 2. Visa derives the MK with Option B (same as Option A up to 16 PAN digits) and "
        "appends the whole IAD to the AC input.",
    ),
})
"""CVN table: 01 and 17 are PBOC, 12 (Visa CVN 18) is the EMV CSK scheme. Unknown CVNs raise."""


def profile_for_cvn(cvn: int) -> CvnProfile:
    """The :class:`CvnProfile` of a CVN (IAD byte 3); :class:`CryptoError` for a CVN not in the table."""
    try:
        return CVN_PROFILES[cvn]
    except (KeyError, TypeError):
        known = ", ".join(f"{c:02X}" for c in CVN_PROFILES)
        raise CryptoError(f"cvn {cvn!r} is not supported (known CVNs: {known})") from None


def session_method_for_cvn(cvn: int) -> SessionMethod:
    """Session key method a CVN uses: ``"pboc"`` for 01 and 17 [M], ``"emv-csk"`` for 12 (Visa 18)."""
    return profile_for_cvn(cvn).session_method


def alg_for_cvn(cvn: int) -> Alg:
    """Default algorithm of a CVN (all table entries are 3DES). Prefer :func:`alg_for_iad` for PBOC."""
    return profile_for_cvn(cvn).alg


def alg_for_iad(iad: Iad) -> Alg:
    """Algorithm of a transaction: IAD byte 8 when it names one ([M] 01 = 3DES, 04 = SM4), else by CVN."""
    return iad.algorithm or alg_for_cvn(iad.cvn)


# -- key records and the issuer-side convenience ------------------------------------------------


def _kcv_hex(key: bytes, alg: Alg) -> str:
    return kcv(key, "3des" if alg == "3des" else "sm4").hex().upper()


@dataclass(frozen=True, repr=False)
class IssuerKeys:
    """Issuer master keys (IMK) for AC, secure-messaging MAC and ENC. ``repr`` shows only KCVs."""

    imk_ac: bytes
    imk_mac: bytes
    imk_enc: bytes
    alg: Alg = "3des"

    def __post_init__(self) -> None:
        _check_alg(self.alg)
        for name in ("imk_ac", "imk_mac", "imk_enc"):
            _check_key(name, getattr(self, name))

    def __repr__(self) -> str:
        kcvs = ", ".join(
            f"{n}=KCV {_kcv_hex(getattr(self, n), self.alg)}" for n in ("imk_ac", "imk_mac", "imk_enc")
        )
        return f"IssuerKeys({kcvs}, alg={self.alg!r})"

    def card_keys(self, pan: str, psn: str | None) -> CardKeys:
        """The card's master keys (Option A / SM4 form), see :meth:`CardKeys.from_imk`."""
        return CardKeys.from_imk(self, pan, psn)


@dataclass(frozen=True, repr=False)
class CardKeys:
    """ICC master keys MK_AC, MK_MAC, MK_ENC of one card. ``repr`` shows only KCVs."""

    mk_ac: bytes
    mk_mac: bytes
    mk_enc: bytes
    alg: Alg = "3des"

    def __post_init__(self) -> None:
        _check_alg(self.alg)
        for name in ("mk_ac", "mk_mac", "mk_enc"):
            _check_key(name, getattr(self, name))

    def __repr__(self) -> str:
        kcvs = ", ".join(
            f"{n}=KCV {_kcv_hex(getattr(self, n), self.alg)}" for n in ("mk_ac", "mk_mac", "mk_enc")
        )
        return f"CardKeys({kcvs}, alg={self.alg!r})"

    @classmethod
    def from_imk(cls, issuer: IssuerKeys, pan: str, psn: str | None) -> CardKeys:
        """Derive the three ICC master keys from the issuer's keys (EMV A1.4.1 / JR/T 0025.17)."""
        return cls(
            mk_ac=derive_icc_master_key(issuer.imk_ac, pan, psn, issuer.alg),
            mk_mac=derive_icc_master_key(issuer.imk_mac, pan, psn, issuer.alg),
            mk_enc=derive_icc_master_key(issuer.imk_enc, pan, psn, issuer.alg),
            alg=issuer.alg,
        )


def verify_arqc(
    imk_ac: bytes,
    pan: str,
    psn: str | None,
    atc: bytes,
    data: bytes,
    arqc: bytes,
    *,
    method: SessionMethod = "pboc",
    alg: Alg = "3des",
) -> bool:
    """Issuer check of an ARQC: derive MK (Option A / SM4), the AC session key by ``method``, recompute.

    ``data`` is the AC input (:func:`ac_input`); the comparison is constant time. Typical backend use::

        iad = parse_iad(field55[0x9F10])
        ok = verify_arqc(imk, pan, psn, atc, data, arqc,
                         method=session_method_for_cvn(iad.cvn), alg=alg_for_iad(iad))
    """
    _check_len("arqc", arqc, 8)
    mk = derive_icc_master_key(imk_ac, pan, psn, alg)
    sk = derive_ac_session_key(mk, atc, method, alg)
    return hmac.compare_digest(generate_ac(sk, data, alg), bytes(arqc))
