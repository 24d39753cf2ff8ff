"""GlobalPlatform card content management commands, host builders and card parsers.

GP Card Specification v2.3 clause 11 (domain brief section 3). Every command has one home here:
a frozen dataclass for its data field with ``encode()`` / ``decode()`` and a ``command()`` that
builds the :class:`~paylab.lab.protocol.apdu.CommandApdu`. Hosts (TSMs, tests) build with these,
the emulated card parses with the same classes, so both ends agree byte for byte. Malformed input
raises :class:`GpCommandError` (a :class:`ProtocolError`) carrying the status word a card answers.

* **INSTALL** ``80 E6 P1 P2`` (11.5). P1: ``02`` [for load], ``04`` [for install], ``08`` [for make
  selectable] (``0C`` = both), ``10`` [for extradition], ``20`` [for personalization], ``40`` [for
  registry update]; b8 (``80``) "more INSTALL commands". The data field is a chain of length-value
  fields; AIDs, privileges and the hash have a 1-byte length, parameters and token a BER length
  (1-3 bytes, Tables 11-42..11-48). Response ``00`` (no receipt).
* **Install parameters** (11.5.2.3.7, Table 11-49): ``C9`` application specific (mandatory since GP
  2.2, may be empty), ``EF`` system specific (``C6``/``C7``/``C8`` memory quotas, Amendment C ``A0``
  contactless / ``A1`` user interaction templates, ...), ``EA`` TS 102 226 UICC parameters.
* **LOAD** ``80 E8 P1 P2`` (11.6): P1 ``80`` on the last block, ``00`` before; P2 the block number
  from 00. The load file is ``[E2 {4F SD AID, C3 signature}]* C4 L <load file data block>``.
* **DELETE** ``80 E4 P1 P2`` (11.2): data ``4F L AID [B6 L CRT] [9E L token]``; P2 ``80`` also deletes
  related objects (the instances of a load file). P1 b8: more DELETE commands follow.
* **GET STATUS** ``80 F2 P1 P2`` (11.4): P1 ``80`` ISD, ``40`` applications and SDs, ``20`` load
  files, ``10`` load files and modules; P2 b2 (``02``) TLV format (else legacy), b1 (``01``) next
  occurrence after ``6310``. Data ``4F L <AID prefix>`` (``4F00`` = all) and, TLV format only, an
  optional ``5C`` tag list. TLV entries ``E3 {4F, 9F70, C5, C4, CE, 84..., CC}``; legacy entries
  ``L AID, life cycle, privileges(1)`` (+ ``count, (L AID)*`` of modules for P1 ``10``).
* **SET STATUS** ``80 F0 P1 P2`` (11.10): P1 ``80`` card (P2 = card life cycle), ``40`` application
  or SD, ``60`` SD and its applications (data = raw AID); P1 ``01`` is the contactless
  *availability* of GP Amendment C 3.11.4 (P2 ``01`` activate, ``00`` deactivate; data a list of
  ``4F`` AIDs). paylab extension, documented choice: each ``4F`` may be followed by ``87 01 <priority>``
  (the EMV Application Priority Indicator the PPSE lists); partial failures answer
  ``A1 {4F...}`` with ``6320`` (Amendment C Table 3-28).
* **PUT KEY** ``80 D8 oldKVN KID|80`` (11.8): ``newKVN {type, L, key component block, L, KCV}*``;
  lengths BER coded (11.8.2.3.1); key blocks wrapped with :mod:`.keys` (Tables 11-70/11-71).
* **STORE DATA** ``80 E2 P1 P2`` (11.11): P1 b8 (``80``) last block, b7-b6 (``60``) encryption (``20``
  application dependent, ``60`` DEK-encrypted), b5-b4 (``18``) structure (``08`` DGI, ``10`` BER-TLV);
  P2 the block number. (GP numbers bits b8..b1; in 0-based terms the fields sit at bits 6-5 and 4-3.)
* **GET DATA** ``80 CA P1P2 00`` (11.3): P1P2 is the tag.

Tokens (delegated management, 11.5.2.3.8 / Annex C.4): the ISD signs ``P1 || P2 || Lc || data``
where data is the command data *without* the token field and Lc its length (1 byte, or ``00 HH LL``
beyond 255). DAP (Annex C.2): a signature over the load file data block *hash*. Signatures are RSA
PKCS#1 v1.5 with SHA-1 (GP Annex B.3.1 scheme 1) or SHA-256, or RSASSA-PSS SHA-256 (scheme 2);
:func:`rsa_verify` accepts any of them.

Known encodings in ``lab/tests/test_gp_commands.py`` come from osmocom/pysim unit tests and
GlobalPlatformPro command construction (values only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .. import tlv
from ..apdu import CommandApdu
from ..errors import ProtocolError, TlvError
from .keys import StaticKeys

CLA_GP = 0x80

INS_DELETE = 0xE4
INS_INSTALL = 0xE6
INS_LOAD = 0xE8
INS_GET_STATUS = 0xF2
INS_SET_STATUS = 0xF0
INS_PUT_KEY = 0xD8
INS_STORE_DATA = 0xE2
INS_GET_DATA = 0xCA

# INSTALL P1 (Table 11-41)
P1_MORE_COMMANDS = 0x80
P1_FOR_LOAD = 0x02
P1_FOR_INSTALL = 0x04
P1_FOR_MAKE_SELECTABLE = 0x08
P1_FOR_INSTALL_AND_MAKE_SELECTABLE = 0x0C
P1_FOR_EXTRADITION = 0x10
P1_FOR_PERSONALIZATION = 0x20
P1_FOR_REGISTRY_UPDATE = 0x40

# LOAD P1 (Table 11-56)
P1_LOAD_MORE_BLOCKS = 0x00
P1_LOAD_LAST_BLOCK = 0x80

# DELETE P2 (Table 11-22)
P2_DELETE_OBJECT = 0x00
P2_DELETE_RELATED = 0x80

# GET STATUS (Tables 11-33, 11-34)
GET_STATUS_ISD = 0x80
GET_STATUS_APPLICATIONS = 0x40
GET_STATUS_LOAD_FILES = 0x20
GET_STATUS_LOAD_FILES_AND_MODULES = 0x10
GET_STATUS_SCOPES = (GET_STATUS_ISD, GET_STATUS_APPLICATIONS, GET_STATUS_LOAD_FILES,
                     GET_STATUS_LOAD_FILES_AND_MODULES)
P2_GET_STATUS_TLV = 0x02
P2_GET_STATUS_NEXT = 0x01

# SET STATUS P1 (Table 11-86; Amendment C 3.11.4)
SET_STATUS_ISD = 0x80
SET_STATUS_APPLICATION = 0x40
SET_STATUS_SD_AND_APPLICATIONS = 0x60
SET_STATUS_AVAILABILITY = 0x01
AVAILABILITY_DEACTIVATED = 0x00
AVAILABILITY_ACTIVATED = 0x01
AVAILABILITY_NON_ACTIVATABLE = 0x80

# PUT KEY key types (Table 11-18)
KEY_TYPE_DES = 0x80
KEY_TYPE_AES = 0x88
KEY_TYPE_RSA_PUBLIC_EXPONENT = 0xA0
KEY_TYPE_RSA_MODULUS = 0xA1

# STORE DATA P1 fields (Table 11-93)
STORE_DATA_LAST = 0x80
STORE_ENCRYPTION_NONE = 0
STORE_ENCRYPTION_APPLICATION = 1
STORE_ENCRYPTION_DEK = 3
STORE_STRUCTURE_NONE = 0
STORE_STRUCTURE_DGI = 1
STORE_STRUCTURE_BER = 2

OS_SD_LOAD_FILE_AID = bytes.fromhex("A0000001515350")
"""[paylab] the card OS's security-domain load file: SSDs are INSTALLed from it (GP 2.3 clause 7.3)."""
OS_SD_MODULE_AID = bytes.fromhex("A000000151535041")
"""[paylab] the security-domain module (class) AID inside :data:`OS_SD_LOAD_FILE_AID`."""

# Tags
TAG_AID = 0x4F
TAG_TAG_LIST = 0x5C
TAG_LIFE_CYCLE = 0x9F70
TAG_PRIVILEGES = 0xC5
TAG_LOAD_FILE_AID = 0xC4
TAG_LOAD_FILE_VERSION = 0xCE
TAG_MODULE_AID = 0x84
TAG_ASSOCIATED_SD = 0xCC
TAG_REGISTRY_ENTRY = 0xE3
TAG_DAP_BLOCK = 0xE2
TAG_DAP_SIGNATURE = 0xC3
TAG_LOAD_FILE_DATA_BLOCK = 0xC4
TAG_CIPHERED_LOAD_FILE_DATA_BLOCK = 0xD4
TAG_CONTROL_REFERENCE = 0xB6
TAG_DELETE_TOKEN = 0x9E
TAG_APPLICATION_PARAMETERS = 0xC9
TAG_SYSTEM_PARAMETERS = 0xEF
TAG_UICC_PARAMETERS = 0xEA
TAG_PRIORITY = 0x87
TAG_FAILED_AIDS = 0xA1

#: LOAD block size the builders use by default: leaves room for a C-MAC (8) and C-ENC padding (16)
#: inside a short APDU whatever the secure channel level.
DEFAULT_BLOCK_SIZE = 200
MAX_BLOCKS = 256

#: Load file data block hash algorithms by digest length (GP v2.3 clause 11.5.2.3.1).
HASH_ALGORITHMS: dict[int, str] = {20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}

SW_WRONG_DATA = 0x6A80
SW_INCORRECT_P1P2 = 0x6A86

SignatureScheme = Literal["pkcs1-sha1", "pkcs1-sha256", "pss-sha256"]
SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = ("pkcs1-sha256", "pkcs1-sha1", "pss-sha256")


class GpCommandError(ProtocolError):
    """A GP command's parameters or data field are malformed; ``sw`` is what a card answers
    (6A80 for the data field, 6A86 for P1/P2)."""

    def __init__(self, message: str, *, sw: int = SW_WRONG_DATA, offset: int | None = None,
                 expected: str | None = None, field: str | None = None) -> None:
        self.sw = sw
        super().__init__(message, offset=offset, expected=expected, field=field)


# --- length-value helpers ------------------------------------------------------------------------

def _ber_length(n: int) -> bytes:
    try:
        return tlv.encode_length(n)
    except TlvError as exc:
        raise GpCommandError(str(exc), field="length") from None


def _lv(value: bytes, *, ber: bool = False, what: str = "field") -> bytes:
    if ber:
        return _ber_length(len(value)) + value
    if len(value) > 0xFF:
        raise GpCommandError(f"{what} of {len(value)} bytes does not fit a 1-byte length", field=what)
    return bytes([len(value)]) + value


def check_aid(aid: bytes, what: str = "AID", *, optional: bool = False) -> bytes:
    """``aid`` if it is 5..16 bytes (ISO/IEC 7816-5), or empty when ``optional``."""
    if not isinstance(aid, bytes | bytearray):
        raise GpCommandError(f"{what} must be bytes, got {type(aid).__name__}", field=what)
    if optional and not aid:
        return bytes(aid)
    if not 5 <= len(aid) <= 16:
        raise GpCommandError(f"{what} of {len(aid)} bytes", field=what,
                             expected="5 to 16 bytes" + (" or empty" if optional else ""))
    return bytes(aid)


def _check_privileges(value: bytes, *, optional: bool = False) -> bytes:
    if optional and not value:
        return bytes(value)
    if len(value) not in (1, 3):
        raise GpCommandError(f"privileges of {len(value)} bytes", field="privileges", expected="1 or 3 bytes")
    return bytes(value)


class _Reader:
    """Sequential reader of length-value fields with offsets in the errors."""

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray):
            raise GpCommandError(f"{what} data must be bytes", field=what)
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def byte(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise GpCommandError(f"{self.what}: missing {name}", offset=self.pos, field=name)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise GpCommandError(f"{self.what}: {name} truncated", offset=self.pos, field=name,
                                 expected=f"{n} bytes, got {len(self.data) - self.pos}")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def lv(self, name: str, *, ber: bool = False) -> bytes:
        start = self.pos
        first = self.byte(f"length of {name}")
        if ber and first & 0x80:
            count = first & 0x7F
            if count not in (1, 2):
                raise GpCommandError(f"{self.what}: bad length {first:02X} of {name}", offset=start,
                                     field=name, expected="00..7F, 81 xx or 82 xxxx")
            length = int.from_bytes(self.take(count, f"length of {name}"), "big")
        else:
            length = first
        return self.take(length, name)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise GpCommandError(f"{self.what}: {len(self.data) - self.pos} trailing bytes", offset=self.pos,
                                 field=self.what, expected="end of data")


def token_data(p1: int, p2: int, data: bytes) -> bytes:
    """The bytes a delegated management token signs: ``P1 || P2 || Lc || data`` (GP v2.3 Annex C.4),
    ``data`` being the command data without the token field and Lc its length (1 byte, or
    ``00 HH LL`` for more than 255 bytes)."""
    lc = bytes([len(data)]) if len(data) <= 0xFF else b"\x00" + len(data).to_bytes(2, "big")
    return bytes([p1 & 0xFF, p2 & 0xFF]) + lc + bytes(data)


# --- signatures (tokens, DAP) --------------------------------------------------------------------

def _scheme_parameters(scheme: SignatureScheme) -> tuple[padding.AsymmetricPadding, hashes.HashAlgorithm]:
    if scheme == "pkcs1-sha1":
        return padding.PKCS1v15(), hashes.SHA1()
    if scheme == "pkcs1-sha256":
        return padding.PKCS1v15(), hashes.SHA256()
    if scheme == "pss-sha256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    raise GpCommandError(f"unknown signature scheme {scheme!r}", field="scheme")


def rsa_sign(private_key: rsa.RSAPrivateKey, message: bytes, scheme: SignatureScheme = "pkcs1-sha256") -> bytes:
    """RSA signature of ``message`` for a token or a DAP block (GP Annex B.3)."""
    pad, algorithm = _scheme_parameters(scheme)
    return private_key.sign(bytes(message), pad, algorithm)


def rsa_verify(public_key: rsa.RSAPublicKey, message: bytes, signature: bytes,
               schemes: Iterable[SignatureScheme] = SIGNATURE_SCHEMES) -> bool:
    """True when ``signature`` verifies over ``message`` under any of ``schemes``."""
    for scheme in schemes:
        pad, algorithm = _scheme_parameters(scheme)
        try:
            public_key.verify(bytes(signature), bytes(message), pad, algorithm)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def load_file_data_block_hash(data_block: bytes, algorithm: str = "sha256") -> bytes:
    """Hash of a load file data block for INSTALL [for load] and the DAP (clause 11.5.2.3.1)."""
    if algorithm not in HASH_ALGORITHMS.values():
        raise GpCommandError(f"unsupported hash algorithm {algorithm!r}", field="hash",
                             expected="sha1, sha256, sha384 or sha512")
    return hashlib.new(algorithm, bytes(data_block)).digest()


def hash_algorithm_of(digest: bytes) -> str:
    """The algorithm a load file data block hash was made with, from its length."""
    try:
        return HASH_ALGORITHMS[len(digest)]
    except KeyError:
        raise GpCommandError(f"hash of {len(digest)} bytes", field="hash",
                             expected="20 (SHA-1), 32, 48 or 64 (SHA-2) bytes") from None


# --- INSTALL -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstallParameters:
    """Install parameters (Table 11-49): ``C9`` application, ``EF`` system, ``EA`` UICC parameters.

    Each is ``None`` when absent; values are raw (``system`` is the concatenated EF children).
    """

    application: bytes | None = b""
    system: bytes | None = None
    uicc: bytes | None = None

    def encode(self) -> bytes:
        out = b""
        for tag, value in ((TAG_APPLICATION_PARAMETERS, self.application), (TAG_SYSTEM_PARAMETERS, self.system),
                           (TAG_UICC_PARAMETERS, self.uicc)):
            if value is not None:
                try:
                    out += tlv.tlv(tag, value)
                except TlvError as exc:
                    raise GpCommandError(str(exc), field=f"tag {tag:02X}") from None
        return out

    @classmethod
    def decode(cls, data: bytes) -> InstallParameters:
        found: dict[int, bytes] = {}
        try:
            objects = tlv.decode(data, allow_padding=False)
        except TlvError as exc:
            raise GpCommandError(f"install parameters: {exc}", field="install parameters") from None
        for obj in objects:
            if obj.tag not in (TAG_APPLICATION_PARAMETERS, TAG_SYSTEM_PARAMETERS, TAG_UICC_PARAMETERS):
                raise GpCommandError(f"install parameters: unexpected tag {obj.tag:X}", field="install parameters",
                                     expected="C9, EF or EA")
            if obj.tag in found:
                raise GpCommandError(f"install parameters: tag {obj.tag:X} repeated", field="install parameters")
            found[obj.tag] = obj.value
        system = found.get(TAG_SYSTEM_PARAMETERS)
        if system is not None:
            try:
                tlv.decode(system, allow_padding=False)
            except TlvError as exc:
                raise GpCommandError(f"system specific parameters (EF): {exc}", field="tag EF") from None
        return cls(found.get(TAG_APPLICATION_PARAMETERS), system, found.get(TAG_UICC_PARAMETERS))

    def system_objects(self) -> list[tlv.Tlv]:
        """The EF children (e.g. ``C7``/``C8`` quotas, Amendment C ``A0``/``A1`` templates)."""
        return tlv.decode(self.system, allow_padding=False) if self.system else []


def load_parameters(*, non_volatile_code: int | None = None, volatile_data: int | None = None,
                    non_volatile_data: int | None = None) -> bytes:
    """Load parameters ``EF {C6, C7, C8}`` (Table 11-49): memory needs in bytes (2-byte values)."""
    children = b""
    for tag, value in ((0xC6, non_volatile_code), (0xC7, volatile_data), (0xC8, non_volatile_data)):
        if value is not None:
            if not 0 <= value <= 0xFFFF:
                raise GpCommandError(f"memory size {value} does not fit 2 bytes", field=f"tag {tag:02X}")
            children += tlv.tlv(tag, value.to_bytes(2, "big"))
    return tlv.tlv(TAG_SYSTEM_PARAMETERS, children) if children else b""


class _InstallData:
    """Shared encoding of the INSTALL variants: an LV chain whose last field is the token."""

    P1: ClassVar[int]
    token: bytes

    def _fields(self) -> list[tuple[bytes, bool]]:  # (value, BER length?) without the token
        raise NotImplementedError

    def signed_data(self) -> bytes:
        """The data field without the token field (what a token signs)."""
        return b"".join(_lv(value, ber=ber) for value, ber in self._fields())

    def encode(self) -> bytes:
        return self.signed_data() + _lv(self.token, ber=True, what="token")

    def token_data(self, p1: int | None = None, p2: int = 0x00) -> bytes:
        """What the ISD signs for this command (GP v2.3 Annex C.4)."""
        return token_data(self.P1 if p1 is None else p1, p2, self.signed_data())

    def command(self, *, p1: int | None = None, p2: int = 0x00, le: int | None = 256) -> CommandApdu:
        return CommandApdu(CLA_GP, INS_INSTALL, self.P1 if p1 is None else p1, p2, self.encode(), le)


@dataclass(frozen=True)
class InstallForLoad(_InstallData):
    """INSTALL [for load] (11.5.2.3.1, Table 11-42)."""

    P1: ClassVar[int] = P1_FOR_LOAD
    load_file_aid: bytes
    security_domain_aid: bytes = b""
    load_file_hash: bytes = b""
    load_parameters: bytes = b""
    token: bytes = b""

    def _fields(self) -> list[tuple[bytes, bool]]:
        if self.load_file_hash:
            hash_algorithm_of(self.load_file_hash)
        return [(check_aid(self.load_file_aid, "load file AID"), False),
                (check_aid(self.security_domain_aid, "security domain AID", optional=True), False),
                (self.load_file_hash, False), (self.load_parameters, True)]

    @classmethod
    def decode(cls, data: bytes) -> InstallForLoad:
        r = _Reader(data, "INSTALL [for load]")
        elf = check_aid(r.lv("load file AID"), "load file AID")
        sd = check_aid(r.lv("security domain AID"), "security domain AID", optional=True)
        digest = r.lv("hash")
        if digest:
            hash_algorithm_of(digest)
        params, token = r.lv("load parameters", ber=True), r.lv("token", ber=True)
        r.end()
        return cls(elf, sd, digest, params, token)


@dataclass(frozen=True)
class InstallForInstall(_InstallData):
    """INSTALL [for install] and [for install and make selectable] (11.5.2.3.2, Table 11-43)."""

    P1: ClassVar[int] = P1_FOR_INSTALL_AND_MAKE_SELECTABLE
    load_file_aid: bytes
    module_aid: bytes
    application_aid: bytes
    privileges: bytes = b"\x00"
    parameters: bytes = b"\xc9\x00"
    token: bytes = b""

    def _fields(self) -> list[tuple[bytes, bool]]:
        return [(check_aid(self.load_file_aid, "load file AID"), False),
                (check_aid(self.module_aid, "module AID"), False),
                (check_aid(self.application_aid, "application AID"), False),
                (_check_privileges(self.privileges), False), (self.parameters, True)]

    @property
    def install_parameters(self) -> InstallParameters:
        return InstallParameters.decode(self.parameters)

    @classmethod
    def decode(cls, data: bytes) -> InstallForInstall:
        r = _Reader(data, "INSTALL [for install]")
        elf = check_aid(r.lv("load file AID"), "load file AID")
        module = check_aid(r.lv("module AID"), "module AID")
        app = check_aid(r.lv("application AID"), "application AID")
        privileges = _check_privileges(r.lv("privileges"))
        params, token = r.lv("install parameters", ber=True), r.lv("token", ber=True)
        r.end()
        return cls(elf, module, app, privileges, params, token)

    def command(self, *, p1: int | None = None, p2: int = 0x00, le: int | None = 256,
                make_selectable: bool = True) -> CommandApdu:
        if p1 is None:
            p1 = P1_FOR_INSTALL_AND_MAKE_SELECTABLE if make_selectable else P1_FOR_INSTALL
        return super().command(p1=p1, p2=p2, le=le)


@dataclass(frozen=True)
class InstallForMakeSelectable(_InstallData):
    """INSTALL [for make selectable] (11.5.2.3.3, Table 11-44): ``00 00 L AID L priv L params L token``."""

    P1: ClassVar[int] = P1_FOR_MAKE_SELECTABLE
    application_aid: bytes
    privileges: bytes = b""
    parameters: bytes = b""
    token: bytes = b""

    def _fields(self) -> list[tuple[bytes, bool]]:
        return [(b"", False), (b"", False), (check_aid(self.application_aid, "application AID"), False),
                (_check_privileges(self.privileges, optional=True), False), (self.parameters, True)]

    @classmethod
    def decode(cls, data: bytes) -> InstallForMakeSelectable:
        r = _Reader(data, "INSTALL [for make selectable]")
        _expect_empty(r, "load file AID")
        _expect_empty(r, "module AID")
        app = check_aid(r.lv("application AID"), "application AID")
        privileges = _check_privileges(r.lv("privileges"), optional=True)
        params, token = r.lv("parameters", ber=True), r.lv("token", ber=True)
        r.end()
        return cls(app, privileges, params, token)


@dataclass(frozen=True)
class InstallForExtradition(_InstallData):
    """INSTALL [for extradition] (11.5.2.3.4, Table 11-45): ``L SD 00 L AID 00 L params L token``."""

    P1: ClassVar[int] = P1_FOR_EXTRADITION
    security_domain_aid: bytes
    application_aid: bytes
    parameters: bytes = b""
    token: bytes = b""

    def _fields(self) -> list[tuple[bytes, bool]]:
        return [(check_aid(self.security_domain_aid, "security domain AID"), False), (b"", False),
                (check_aid(self.application_aid, "application or load file AID"), False), (b"", False),
                (self.parameters, True)]

    @classmethod
    def decode(cls, data: bytes) -> InstallForExtradition:
        r = _Reader(data, "INSTALL [for extradition]")
        sd = check_aid(r.lv("security domain AID"), "security domain AID")
        _expect_empty(r, "second field")
        app = check_aid(r.lv("application AID"), "application or load file AID")
        _expect_empty(r, "privileges")
        params, token = r.lv("extradition parameters", ber=True), r.lv("token", ber=True)
        r.end()
        return cls(sd, app, params, token)


@dataclass(frozen=True)
class InstallForRegistryUpdate(_InstallData):
    """INSTALL [for registry update] (11.5.2.3.5, Table 11-46): ``L SD 00 L AID L priv L params L token``;
    every field but the token may be empty."""

    P1: ClassVar[int] = P1_FOR_REGISTRY_UPDATE
    security_domain_aid: bytes = b""
    application_aid: bytes = b""
    privileges: bytes = b""
    parameters: bytes = b""
    token: bytes = b""

    def _fields(self) -> list[tuple[bytes, bool]]:
        return [(check_aid(self.security_domain_aid, "security domain AID", optional=True), False), (b"", False),
                (check_aid(self.application_aid, "application AID", optional=True), False),
                (_check_privileges(self.privileges, optional=True), False), (self.parameters, True)]

    @classmethod
    def decode(cls, data: bytes) -> InstallForRegistryUpdate:
        r = _Reader(data, "INSTALL [for registry update]")
        sd = check_aid(r.lv("security domain AID"), "security domain AID", optional=True)
        _expect_empty(r, "second field")
        app = check_aid(r.lv("application AID"), "application AID", optional=True)
        privileges = _check_privileges(r.lv("privileges"), optional=True)
        params, token = r.lv("registry update parameters", ber=True), r.lv("token", ber=True)
        r.end()
        return cls(sd, app, privileges, params, token)


@dataclass(frozen=True)
class InstallForPersonalization(_InstallData):
    """INSTALL [for personalization] (11.5.2.3.6, Table 11-47): ``00 00 L AID 00 00 00``."""

    P1: ClassVar[int] = P1_FOR_PERSONALIZATION
    application_aid: bytes
    token: bytes = field(default=b"", init=False, repr=False)

    def _fields(self) -> list[tuple[bytes, bool]]:
        return [(b"", False), (b"", False), (check_aid(self.application_aid, "application AID"), False),
                (b"", False), (b"", True)]

    @classmethod
    def decode(cls, data: bytes) -> InstallForPersonalization:
        r = _Reader(data, "INSTALL [for personalization]")
        _expect_empty(r, "first field")
        _expect_empty(r, "second field")
        app = check_aid(r.lv("application AID"), "application AID")
        for name in ("fourth field", "fifth field", "sixth field"):
            _expect_empty(r, name)
        r.end()
        return cls(app)


def _expect_empty(r: _Reader, name: str) -> None:
    start = r.pos
    if r.lv(name):
        raise GpCommandError(f"{r.what}: {name} must be empty", offset=start, field=name)


InstallData = (InstallForLoad | InstallForInstall | InstallForMakeSelectable | InstallForExtradition
               | InstallForRegistryUpdate | InstallForPersonalization)


def parse_install(p1: int, data: bytes) -> InstallData:
    """Card side: the INSTALL variant selected by P1 (b8 "more commands" ignored), decoded.

    :raises GpCommandError: 6A86 for a P1 combination paylab does not support, 6A80 for bad data.
    """
    kind = p1 & 0x7F
    if kind == P1_FOR_LOAD:
        return InstallForLoad.decode(data)
    if kind in (P1_FOR_INSTALL, P1_FOR_INSTALL_AND_MAKE_SELECTABLE):
        return InstallForInstall.decode(data)
    if kind == P1_FOR_MAKE_SELECTABLE:
        return InstallForMakeSelectable.decode(data)
    if kind == P1_FOR_EXTRADITION:
        return InstallForExtradition.decode(data)
    if kind == P1_FOR_PERSONALIZATION:
        return InstallForPersonalization.decode(data)
    if kind == P1_FOR_REGISTRY_UPDATE:
        return InstallForRegistryUpdate.decode(data)
    raise GpCommandError(f"INSTALL P1 {p1:02X} not supported", sw=SW_INCORRECT_P1P2, field="P1",
                         expected="02, 04, 08, 0C, 10, 20 or 40 (b8 = more commands)")


# --- LOAD ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DapBlock:
    """A DAP block ``E2 {4F SD AID, C3 signature}`` (11.6.2.3, Table 11-58)."""

    security_domain_aid: bytes
    signature: bytes

    def encode(self) -> bytes:
        body = tlv.tlv(TAG_AID, check_aid(self.security_domain_aid, "DAP security domain AID"))
        return tlv.tlv(TAG_DAP_BLOCK, body + tlv.tlv(TAG_DAP_SIGNATURE, self.signature))

    @classmethod
    def from_tlv(cls, obj: tlv.Tlv) -> DapBlock:
        children = obj.children
        if [c.tag for c in children] != [TAG_AID, TAG_DAP_SIGNATURE]:
            raise GpCommandError("DAP block must hold 4F then C3", field="tag E2")
        return cls(check_aid(children[0].value, "DAP security domain AID"), children[1].value)


@dataclass(frozen=True)
class LoadFile:
    """What the LOAD commands carry: DAP blocks then ``C4`` (or ``D4`` ciphered) and the load file
    data block (11.6.2.3)."""

    data_block: bytes
    dap_blocks: tuple[DapBlock, ...] = ()
    ciphered: bool = False

    def encode(self) -> bytes:
        tag = TAG_CIPHERED_LOAD_FILE_DATA_BLOCK if self.ciphered else TAG_LOAD_FILE_DATA_BLOCK
        try:
            return b"".join(d.encode() for d in self.dap_blocks) + tlv.tlv(tag, self.data_block)
        except TlvError as exc:
            raise GpCommandError(f"load file: {exc}", field="load file") from None

    @classmethod
    def decode(cls, data: bytes) -> LoadFile:
        try:
            objects = tlv.decode(data, allow_padding=False)
        except TlvError as exc:
            raise GpCommandError(f"load file: {exc}", field="load file") from None
        if not objects or objects[-1].tag not in (TAG_LOAD_FILE_DATA_BLOCK, TAG_CIPHERED_LOAD_FILE_DATA_BLOCK):
            raise GpCommandError("load file must end with C4 (or D4) and the load file data block",
                                 field="load file")
        daps = []
        for obj in objects[:-1]:
            if obj.tag != TAG_DAP_BLOCK:
                raise GpCommandError(f"load file: unexpected tag {obj.tag:X} before C4", field="load file",
                                     expected="E2 DAP blocks")
            daps.append(DapBlock.from_tlv(obj))
        last = objects[-1]
        return cls(last.value, tuple(daps), last.tag == TAG_CIPHERED_LOAD_FILE_DATA_BLOCK)


def split_blocks(data: bytes, block_size: int = DEFAULT_BLOCK_SIZE) -> list[bytes]:
    """``data`` cut into blocks of ``block_size`` (at least one block, possibly empty)."""
    if not 1 <= block_size <= 0xFFFF:
        raise GpCommandError(f"block size {block_size}", field="block size", expected="1..65535")
    blocks = [data[i:i + block_size] for i in range(0, len(data), block_size)] or [b""]
    if len(blocks) > MAX_BLOCKS:
        raise GpCommandError(f"{len(blocks)} blocks do not fit the 1-byte block number", field="P2",
                             expected=f"at most {MAX_BLOCKS} blocks: raise the block size")
    return blocks


def load_commands(load_file: bytes, block_size: int = DEFAULT_BLOCK_SIZE, *, le: int | None = 256
                  ) -> list[CommandApdu]:
    """The LOAD commands for ``load_file`` (encoded :class:`LoadFile`): P1 ``80`` on the last block,
    P2 the block number (11.6.2.1)."""
    blocks = split_blocks(load_file, block_size)
    return [CommandApdu(CLA_GP, INS_LOAD, P1_LOAD_LAST_BLOCK if i == len(blocks) - 1 else P1_LOAD_MORE_BLOCKS,
                        i, block, le) for i, block in enumerate(blocks)]


# --- DELETE --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeleteCommand:
    """DELETE [card content] (11.2.2.3.1, Table 11-23): ``4F L AID [B6 L CRT] [9E L token]``."""

    aid: bytes
    related_objects: bool = False
    control_reference: bytes | None = None
    token: bytes = b""
    more_commands: bool = False

    @property
    def p1(self) -> int:
        return 0x80 if self.more_commands else 0x00

    @property
    def p2(self) -> int:
        return P2_DELETE_RELATED if self.related_objects else P2_DELETE_OBJECT

    def signed_data(self) -> bytes:
        out = tlv.tlv(TAG_AID, check_aid(self.aid, "AID"))
        if self.control_reference is not None:
            out += tlv.tlv(TAG_CONTROL_REFERENCE, self.control_reference)
        return out

    def encode(self) -> bytes:
        return self.signed_data() + (tlv.tlv(TAG_DELETE_TOKEN, self.token) if self.token else b"")

    def token_data(self) -> bytes:
        return token_data(self.p1, self.p2, self.signed_data())

    def command(self, *, le: int | None = 256) -> CommandApdu:
        return CommandApdu(CLA_GP, INS_DELETE, self.p1, self.p2, self.encode(), le)

    @classmethod
    def decode(cls, data: bytes, *, p1: int = 0x00, p2: int = 0x00) -> DeleteCommand:
        if p1 & 0x7F:
            raise GpCommandError(f"DELETE P1 {p1:02X}", sw=SW_INCORRECT_P1P2, field="P1", expected="00 or 80")
        if p2 not in (P2_DELETE_OBJECT, P2_DELETE_RELATED):
            raise GpCommandError(f"DELETE P2 {p2:02X}", sw=SW_INCORRECT_P1P2, field="P2", expected="00 or 80")
        try:
            objects = tlv.decode(data, allow_padding=False)
        except TlvError as exc:
            raise GpCommandError(f"DELETE: {exc}", field="DELETE data") from None
        tags = [o.tag for o in objects]
        if not objects or tags[0] != TAG_AID:
            raise GpCommandError("DELETE data must start with 4F", field="DELETE data", expected="4F L AID")
        index = 1
        crt: bytes | None = None
        token = b""
        if index < len(objects) and tags[index] == TAG_CONTROL_REFERENCE:
            crt = objects[index].value
            index += 1
        if index < len(objects) and tags[index] == TAG_DELETE_TOKEN:
            token = objects[index].value
            index += 1
            if not token:
                raise GpCommandError("DELETE token 9E is empty", field="tag 9E")
        if index < len(objects):
            raise GpCommandError(f"DELETE: unexpected tag {tags[index]:X}", field="DELETE data",
                                 expected="4F [B6] [9E]")
        return cls(check_aid(objects[0].value, "AID"), p2 == P2_DELETE_RELATED, crt, token, bool(p1 & 0x80))


# --- GET STATUS ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GetStatusCommand:
    """GET STATUS (11.4.2): scope P1, P2 format/next, ``4F`` AID prefix and optional ``5C`` tag list."""

    scope: int
    aid_prefix: bytes = b""
    tlv_format: bool = True
    next_occurrence: bool = False
    tag_list: tuple[int, ...] | None = None

    @property
    def p2(self) -> int:
        return (P2_GET_STATUS_TLV if self.tlv_format else 0) | (P2_GET_STATUS_NEXT if self.next_occurrence else 0)

    def encode(self) -> bytes:
        if self.scope not in GET_STATUS_SCOPES:
            raise GpCommandError(f"GET STATUS P1 {self.scope:02X}", sw=SW_INCORRECT_P1P2, field="P1")
        if len(self.aid_prefix) > 16:
            raise GpCommandError("AID prefix longer than 16 bytes", field="tag 4F")
        out = tlv.tlv(TAG_AID, self.aid_prefix)
        if self.tag_list is not None:
            if not self.tlv_format:
                raise GpCommandError("a tag list needs the TLV format", field="tag 5C")
            out += tlv.tlv(TAG_TAG_LIST, b"".join(tlv.tag_bytes(t) for t in self.tag_list))
        return out

    def command(self, *, le: int | None = 256) -> CommandApdu:
        return CommandApdu(CLA_GP, INS_GET_STATUS, self.scope, self.p2, self.encode(), le)

    def next(self) -> GetStatusCommand:
        """The command that asks for the next occurrences after ``6310``."""
        return replace(self, next_occurrence=True)

    @classmethod
    def decode(cls, p1: int, p2: int, data: bytes) -> GetStatusCommand:
        if p1 not in GET_STATUS_SCOPES:
            raise GpCommandError(f"GET STATUS P1 {p1:02X}", sw=SW_INCORRECT_P1P2, field="P1",
                                 expected="80, 40, 20 or 10")
        if p2 & ~(P2_GET_STATUS_TLV | P2_GET_STATUS_NEXT):
            raise GpCommandError(f"GET STATUS P2 {p2:02X}", sw=SW_INCORRECT_P1P2, field="P2",
                                 expected="00, 01, 02 or 03")
        tlv_format = bool(p2 & P2_GET_STATUS_TLV)
        try:
            objects = tlv.decode(data, allow_padding=False)
        except TlvError as exc:
            raise GpCommandError(f"GET STATUS: {exc}", field="GET STATUS data") from None
        if not objects or objects[0].tag != TAG_AID:
            raise GpCommandError("GET STATUS data must start with 4F", field="GET STATUS data",
                                 expected="4F L <AID prefix>")
        prefix = objects[0].value
        if len(prefix) > 16:
            raise GpCommandError("AID prefix longer than 16 bytes", field="tag 4F")
        tags: tuple[int, ...] | None = None
        if len(objects) > 1:
            if len(objects) > 2 or objects[1].tag != TAG_TAG_LIST or not tlv_format:
                raise GpCommandError("GET STATUS: only 4F and (TLV format) 5C are supported",
                                     field="GET STATUS data")
            tags = _parse_tag_list(objects[1].value)
        return cls(p1, prefix, tlv_format, bool(p2 & P2_GET_STATUS_NEXT), tags)


def _parse_tag_list(raw: bytes) -> tuple[int, ...]:
    tags = []
    pos = 0
    while pos < len(raw):
        try:
            tag, pos = tlv.parse_tag(raw, pos)
        except TlvError as exc:
            raise GpCommandError(f"tag list: {exc}", field="tag 5C") from None
        tags.append(tag)
    return tuple(tags)


@dataclass(frozen=True)
class GetStatusEntry:
    """One registry entry as GET STATUS reports it (Tables 11-36..11-39)."""

    aid: bytes
    life_cycle: int
    privileges: bytes | None = None
    load_file_aid: bytes | None = None
    load_file_version: bytes | None = None
    modules: tuple[bytes, ...] = ()
    associated_sd: bytes | None = None

    def encode_tlv(self, tags: Collection[int] | None = None) -> bytes:
        """``E3 {4F, 9F70, C5, C4, CE, 84..., CC}``; with ``tags`` (a ``5C`` tag list) only the listed
        objects, but always ``4F`` and ``9F70`` so that every entry stays identifiable (as
        Amendment C's CRS does)."""
        def want(tag: int) -> bool:
            return tags is None or tag in tags

        body = tlv.tlv(TAG_AID, self.aid) + tlv.tlv(TAG_LIFE_CYCLE, bytes([self.life_cycle & 0xFF]))
        optional = ((TAG_PRIVILEGES, self.privileges), (TAG_LOAD_FILE_AID, self.load_file_aid),
                    (TAG_LOAD_FILE_VERSION, self.load_file_version))
        for tag, value in optional:
            if value is not None and want(tag):
                body += tlv.tlv(tag, value)
        if want(TAG_MODULE_AID):
            body += b"".join(tlv.tlv(TAG_MODULE_AID, m) for m in self.modules)
        if self.associated_sd is not None and want(TAG_ASSOCIATED_SD):
            body += tlv.tlv(TAG_ASSOCIATED_SD, self.associated_sd)
        return tlv.tlv(TAG_REGISTRY_ENTRY, body)

    def encode_legacy(self, scope: int) -> bytes:
        """``L AID, life cycle, privileges (1 byte)`` and for P1 ``10`` the module count and AIDs."""
        privilege = self.privileges[0] if self.privileges else 0
        out = _lv(self.aid, what="AID") + bytes([self.life_cycle & 0xFF, privilege])
        if scope == GET_STATUS_LOAD_FILES_AND_MODULES:
            if len(self.modules) > 0xFF:
                raise GpCommandError("more than 255 modules", field="modules")
            out += bytes([len(self.modules)]) + b"".join(_lv(m, what="module AID") for m in self.modules)
        return out

    @classmethod
    def from_tlv(cls, obj: tlv.Tlv) -> GetStatusEntry:
        if obj.tag != TAG_REGISTRY_ENTRY:
            raise GpCommandError(f"GET STATUS: unexpected tag {obj.tag:X}", field="GET STATUS response",
                                 expected="E3 entries")
        values: dict[int, bytes] = {}
        modules: list[bytes] = []
        for child in obj.children:
            if child.tag == TAG_MODULE_AID:
                modules.append(child.value)
            else:
                values.setdefault(child.tag, child.value)  # unknown tags (CF, EA, ...) are kept out
        if TAG_AID not in values or not values.get(TAG_LIFE_CYCLE):
            raise GpCommandError("GET STATUS entry without 4F or 9F70", field="tag E3")
        return cls(values[TAG_AID], values[TAG_LIFE_CYCLE][0], values.get(TAG_PRIVILEGES),
                   values.get(TAG_LOAD_FILE_AID), values.get(TAG_LOAD_FILE_VERSION), tuple(modules),
                   values.get(TAG_ASSOCIATED_SD))


def parse_get_status_response(data: bytes, *, scope: int, tlv_format: bool = True) -> list[GetStatusEntry]:
    """Host side: the entries of one or more concatenated GET STATUS responses."""
    if tlv_format:
        try:
            objects = tlv.decode(data, allow_padding=False)
        except TlvError as exc:
            raise GpCommandError(f"GET STATUS response: {exc}", field="GET STATUS response") from None
        return [GetStatusEntry.from_tlv(obj) for obj in objects]
    r = _Reader(data, "GET STATUS response")
    entries = []
    while r.pos < len(data):
        aid = r.lv("AID")
        life_cycle, privilege = r.byte("life cycle"), r.byte("privileges")
        modules: list[bytes] = []
        if scope == GET_STATUS_LOAD_FILES_AND_MODULES:
            for _ in range(r.byte("number of modules")):
                modules.append(r.lv("module AID"))
        entries.append(GetStatusEntry(aid, life_cycle, bytes([privilege]), modules=tuple(modules)))
    return entries


# --- SET STATUS ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetStatusCommand:
    """SET STATUS for the card (P1 80), an application or SD (40) or an SD and its applications (60)
    (11.10, Table 11-86): P2 is the target state, the data the raw AID (may be empty for P1 80)."""

    scope: int
    state: int
    aid: bytes = b""

    def encode(self) -> bytes:
        return check_aid(self.aid, "AID", optional=self.scope == SET_STATUS_ISD)

    def command(self, *, le: int | None = None) -> CommandApdu:
        return CommandApdu(CLA_GP, INS_SET_STATUS, self.scope, self.state & 0xFF, self.encode(), le)

    @classmethod
    def decode(cls, p1: int, p2: int, data: bytes) -> SetStatusCommand:
        if p1 not in (SET_STATUS_ISD, SET_STATUS_APPLICATION, SET_STATUS_SD_AND_APPLICATIONS):
            raise GpCommandError(f"SET STATUS P1 {p1:02X}", sw=SW_INCORRECT_P1P2, field="P1",
                                 expected="80, 40, 60 (or 01, see SetAvailability)")
        return cls(p1, p2, check_aid(bytes(data), "AID", optional=p1 == SET_STATUS_ISD))


@dataclass(frozen=True)
class AvailabilityTarget:
    """One application of a SET STATUS [availability]: its AID and (paylab) PPSE priority."""

    aid: bytes
    priority: int | None = None


@dataclass(frozen=True)
class SetAvailability:
    """SET STATUS P1 ``01`` (GP Amendment C 3.11.4): contactless activation (P2 ``01``) or
    deactivation (P2 ``00``) of the ``4F`` listed applications; paylab lets ``87 01 <priority>``
    follow an AID to set its PPSE Application Priority Indicator."""

    activate: bool
    targets: tuple[AvailabilityTarget, ...]

    @property
    def p2(self) -> int:
        return AVAILABILITY_ACTIVATED if self.activate else AVAILABILITY_DEACTIVATED

    def encode(self) -> bytes:
        if not self.targets:
            raise GpCommandError("SET STATUS [availability] needs at least one AID", field="data")
        out = b""
        for target in self.targets:
            out += tlv.tlv(TAG_AID, check_aid(target.aid, "AID"))
            if target.priority is not None:
                if not 0 <= target.priority <= 0xFF:
                    raise GpCommandError(f"priority {target.priority}", field="tag 87", expected="one byte")
                out += tlv.tlv(TAG_PRIORITY, bytes([target.priority]))
        return out

    def command(self, *, le: int | None = None) -> CommandApdu:
        return CommandApdu(CLA_GP, INS_SET_STATUS, SET_STATUS_AVAILABILITY, self.p2, self.encode(), le)

    @classmethod
    def decode(cls, p2: int, data: bytes) -> SetAvailability:
        if p2 not in (AVAILABILITY_ACTIVATED, AVAILABILITY_DEACTIVATED):
            raise GpCommandError(f"availability state {p2:02X}", sw=SW_INCORRECT_P1P2, field="P2",
                                 expected="00 (deactivate) or 01 (activate)")
        try:
            objects = tlv.decode(data, allow_padding=False)
        except TlvError as exc:
            raise GpCommandError(f"SET STATUS [availability]: {exc}", field="data") from None
        targets: list[AvailabilityTarget] = []
        for obj in objects:
            if obj.tag == TAG_AID:
                targets.append(AvailabilityTarget(check_aid(obj.value, "AID")))
            elif obj.tag == TAG_PRIORITY and targets and targets[-1].priority is None and len(obj.value) == 1:
                targets[-1] = replace(targets[-1], priority=obj.value[0])
            else:
                raise GpCommandError(f"SET STATUS [availability]: unexpected tag {obj.tag:X}", field="data",
                                     expected="4F L AID [87 01 priority], repeated")
        if not targets:
            raise GpCommandError("SET STATUS [availability] names no application", field="data")
        return cls(p2 == AVAILABILITY_ACTIVATED, tuple(targets))


def parse_set_status(p1: int, p2: int, data: bytes) -> SetStatusCommand | SetAvailability:
    """Card side: a SET STATUS decoded by its P1."""
    if p1 == SET_STATUS_AVAILABILITY:
        return SetAvailability.decode(p2, data)
    return SetStatusCommand.decode(p1, p2, data)


# --- PUT KEY -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyData:
    """One key of a PUT KEY data field (11.8.2.3, Table 11-69): type, key component block, KCV."""

    key_type: int
    value: bytes
    kcv: bytes = b""

    def encode(self) -> bytes:
        if not 0 <= self.key_type <= 0xFE:
            raise GpCommandError(f"key type {self.key_type}", field="key type", expected="00..FE")
        return bytes([self.key_type]) + _lv(self.value, ber=True) + _lv(self.kcv, what="KCV")


@dataclass(frozen=True)
class PutKeyData:
    """PUT KEY data field: ``new KVN || key data*`` (Table 11-68)."""

    new_kvn: int
    keys: tuple[KeyData, ...]

    def encode(self) -> bytes:
        if not 0 <= self.new_kvn <= 0xFF:
            raise GpCommandError(f"key version {self.new_kvn}", field="KVN")
        if not self.keys:
            raise GpCommandError("PUT KEY without keys", field="key data")
        return bytes([self.new_kvn]) + b"".join(k.encode() for k in self.keys)

    @classmethod
    def decode(cls, data: bytes) -> PutKeyData:
        r = _Reader(data, "PUT KEY")
        kvn = r.byte("new key version")
        keys = []
        while r.pos < len(r.data):
            key_type = r.byte("key type")
            if key_type == 0xFF:
                raise GpCommandError("extended key format (FF) not supported", offset=r.pos - 1, field="key type")
            keys.append(KeyData(key_type, r.lv("key component block", ber=True), r.lv("KCV")))
        if not keys:
            raise GpCommandError("PUT KEY without keys", field="key data")
        return cls(kvn, tuple(keys))

    def command(self, *, old_kvn: int = 0x00, key_id: int = 0x01, le: int | None = 256) -> CommandApdu:
        """``80 D8 oldKVN KID`` (b8 of P2 set when several keys follow); old KVN 00 adds a key set."""
        p2 = (key_id & 0x7F) | (0x80 if len(self.keys) > 1 else 0x00)
        return CommandApdu(CLA_GP, INS_PUT_KEY, old_kvn, p2, self.encode(), le)


class _KeyWrappingSession(Protocol):
    scp: int

    def encrypt_key_for_put_key(self, key: bytes, *, kcv: bytes | None = None) -> tuple[bytes, bytes]: ...


def put_key_data(session: _KeyWrappingSession, new_kvn: int, keys: StaticKeys) -> PutKeyData:
    """PUT KEY data replacing/adding the ENC, MAC and DEK keys (KID 1, 2, 3) of a security domain,
    wrapped with the session's DEK helper (SCP03: AES static DEK, type 88; SCP02: session DEK, 3DES,
    type 80)."""
    key_type = KEY_TYPE_AES if session.scp == 0x03 else KEY_TYPE_DES
    blocks = []
    for key in (keys.enc, keys.mac, keys.dek):
        kcb, kcv = session.encrypt_key_for_put_key(key)
        blocks.append(KeyData(key_type, kcb, kcv))
    return PutKeyData(new_kvn, tuple(blocks))


# --- STORE DATA ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreDataP1:
    """STORE DATA P1 (Table 11-93): b8 last block, b7-b6 encryption, b5-b4 structure, b3-b1 kept."""

    last: bool = True
    encryption: int = STORE_ENCRYPTION_NONE
    structure: int = STORE_STRUCTURE_NONE
    low_bits: int = 0

    def encode(self) -> int:
        if not (0 <= self.encryption <= 3 and 0 <= self.structure <= 3 and 0 <= self.low_bits <= 7):
            raise GpCommandError("STORE DATA P1 field out of range", field="P1")
        return (STORE_DATA_LAST if self.last else 0) | self.encryption << 5 | self.structure << 3 | self.low_bits

    @classmethod
    def decode(cls, p1: int) -> StoreDataP1:
        return cls(bool(p1 & STORE_DATA_LAST), (p1 >> 5) & 3, (p1 >> 3) & 3, p1 & 7)


def store_data_commands(blocks: Sequence[bytes], *, structure: int = STORE_STRUCTURE_DGI,
                        encryption: int = STORE_ENCRYPTION_NONE, first_block: int = 0,
                        le: int | None = 256) -> list[CommandApdu]:
    """One STORE DATA per block, P2 the block number, the last one flagged (11.11.2.1)."""
    if not blocks:
        raise GpCommandError("STORE DATA needs at least one block", field="data")
    if first_block + len(blocks) > MAX_BLOCKS:
        raise GpCommandError("too many STORE DATA blocks for a 1-byte block number", field="P2")
    out = []
    for i, block in enumerate(blocks):
        p1 = StoreDataP1(i == len(blocks) - 1, encryption, structure).encode()
        out.append(CommandApdu(CLA_GP, INS_STORE_DATA, p1, first_block + i, bytes(block), le))
    return out


def encode_dgi(tag: int, value: bytes) -> bytes:
    """A data grouping (EMV CPS): 2-byte tag, length ``xx`` or ``FF xxxx``, value."""
    if not 0 <= tag <= 0xFFFF:
        raise GpCommandError(f"DGI {tag:X}", field="DGI", expected="2 bytes")
    if len(value) < 0xFF:
        length = bytes([len(value)])
    elif len(value) <= 0xFFFF:
        length = b"\xff" + len(value).to_bytes(2, "big")
    else:
        raise GpCommandError("DGI value longer than 65535 bytes", field="DGI")
    return tag.to_bytes(2, "big") + length + bytes(value)


def decode_dgis(data: bytes) -> list[tuple[int, bytes]]:
    """Inverse of :func:`encode_dgi` over a concatenation of DGIs."""
    r = _Reader(data, "DGI data")
    out = []
    while r.pos < len(r.data):
        tag = int.from_bytes(r.take(2, "DGI tag"), "big")
        length = r.byte("DGI length")
        if length == 0xFF:
            length = int.from_bytes(r.take(2, "DGI length"), "big")
        out.append((tag, r.take(length, f"DGI {tag:04X}")))
    return out


# --- GET DATA ------------------------------------------------------------------------------------

TAG_CARD_DATA = 0x66
TAG_CPLC = 0x9F7F
TAG_KEY_INFORMATION_TEMPLATE = 0xE0
TAG_ISSUER_IDENTIFICATION = 0x42
TAG_CARD_IMAGE_NUMBER = 0x45
TAG_KEY_DIVERSIFICATION_DATA = 0xCF


def get_data_command(tag: int, *, le: int | None = 256) -> CommandApdu:
    """GET DATA ``80 CA P1P2 00`` for a 1- or 2-byte tag (11.3)."""
    if not 0 < tag <= 0xFFFF:
        raise GpCommandError(f"GET DATA tag {tag:X}", field="P1P2", expected="1 or 2 byte tag")
    return CommandApdu(CLA_GP, INS_GET_DATA, tag >> 8, tag & 0xFF, b"", le)
