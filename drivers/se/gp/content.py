"""Card content management of the emulated card's security domains (GP Card Specification v2.3
clause 9 and 11; Amendment C for contactless availability).

The security domain (:mod:`drivers.se.gp.security_domain`) checks and strips secure messaging and
hands the *plain* command to the ``handle_*`` functions here, which return a :class:`Reply` or
raise :class:`ISOException`. Byte formats live in :mod:`paylab.lab.protocol.gp.commands`.

Who may manage content (clause 9.1): the ISD, an SSD with Authorized Management (no token), an
SSD with Delegated Management with a **token** (RSA signature of ``P1 P2 Lc data-without-token`` by
the ISD, Annex C.4; PKCS#1 v1.5 SHA-1/SHA-256 or PSS SHA-256). The token verification key is the
ISD's ``"token_key"`` (its part of the card image): a DER SubjectPublicKeyInfo, or
``{"n": bytes, "e": int}``; :func:`set_token_key` writes it. An SD acts on the entries *in its
domain*: those whose chain of associated SDs leads to it (the ISD acts on every entry).

**Load file** (what a LOAD carries; there is no Java Card VM, so a load file is a descriptor of a
package the card's :class:`~drivers.se.catalog.Catalog` knows). The load file data block is BER-TLV::

    DF70 L <package AID>          exactly once, first; must equal the INSTALL [for load] ELF AID
    DF71 L <version, ASCII>       exactly once; must equal the catalog's version
    DF72 L <module AID>           zero or more, distinct; must be exactly the catalog's modules
    DF7F L <code>                 optional, ignored (stands for the code: makes loads multi-block)

:func:`build_load_file` wraps it as ``[E2 DAP]* C4 L <block>`` for LOAD. A package the catalog
does not know, a version or module list that differs, or any malformed block answers 6A80 and
registers nothing.

**DAP** (Annex C.2): when an SD in the target SD's chain has DAP Verification, or any SD has
Mandated DAP, INSTALL [for load] needs a hash and LOAD an ``E2`` block for each such SD, whose
``C3`` is an RSA signature over the hash verified with that SD's ``"dap_key"`` (same formats as the
token key; :func:`set_dap_key`). AES/3DES DAP MACs are not implemented.

**Security domains**: INSTALL [for install] with privilege byte 1 bit ``80`` creates an SSD (registry
kind ``"SD"``, implementation ``paylab.gp.sd``) associated with the installing SD. Its module is the
card OS's SD module (ELF ``A0000001515350`` module ``A000000151535041``, needed in no registry) or
any loaded module implemented by ``paylab.gp.sd``. The new SD's ``install()`` receives the install
parameters (C9 ``81 <SCP> [i]`` picks its protocol, see :mod:`drivers.se.gp.security_domain`) and
starts **without keys**: its creator gives it its first key set with INSTALL [for personalization]
of the new SD and STORE DATA (DGIs ``00A6`` key parameters, ``8F01`` DEK-encrypted keys, ``9F01``
KCVs), decrypted by the creator and forwarded; the key handover to the SSD's owner is then a PUT
KEY over the new SSD's own secure channel, replacing that first key set.

**Contactless** (Amendment C): ``EF {A0 {81 <initial state>}}`` in the install parameters
(00 deactivated, 01 activated, 80 non-activatable) applies when the application becomes
selectable; ``EF {A1 {87 <family>, A6 {BF0C {61 {4F, 50 label, 87 priority, 9F2A kernel}}}}}``
records the PPSE label, priority and kernel id (registry ``extra``). SET STATUS P1 ``01`` activates
or deactivates (paylab: ``87 01 <priority>`` after an AID sets the priority); allowed for the ISD,
an SD with the Contactless Activation privilege, or the application's own SD.

Status words (decisions where GP leaves room):

=====  ==============================================================================================
6982   no secure channel (raised by the SD); SD without AM/DM; DM token absent or wrong; DAP
       signature wrong
6985   card LOCKED/TERMINATED; AID already on the card; object not in this SD's domain; a load file
       with instances (DELETE P2 00), an SD with associated entries (P2 00), an OS application;
       LOAD without INSTALL [for load]; GET STATUS "next" without a pending one; illegal life cycle
       transition or missing card lock/terminate privilege (the SD's ``set_card_life_cycle``);
       token or DAP key missing on the card
6A80   malformed data field; privileges an SD may not grant; hash of wrong length, missing or not
       matching; missing DAP block; unknown package / version / modules in the load file
6A84   load file larger than :data:`MAX_LOAD_FILE`
6A86   P1/P2 not supported; a LOAD block out of sequence (the load is **aborted**: the next LOAD
       answers 6985 until a new INSTALL [for load])
6A88   referenced AID (load file, module, SD, application) not found; GET STATUS matched nothing
6A81   DELETE [key] (``D0``/``D2``): not handled here
6310   GET STATUS: more entries, ask again with P2 b1 set
6320   SET STATUS [availability] partial failure: ``A1 {4F <failed AID>...}``
=====  ==============================================================================================

Successful INSTALL, LOAD and DELETE answer ``00`` (no receipt).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.errors import ProtocolError, TlvError
from paylab.lab.protocol.gp import commands as gp
from paylab.lab.protocol.gp.session import SecurityLevel

from ..applet import ApduContext, InstallParams, Reply
from ..catalog import PackageInfo
from ..errors import ISOException
from ..registry import (
    APP_INSTALLED,
    APP_LOCKED_BIT,
    APP_SELECTABLE,
    CARD_LOCKED,
    CARD_TERMINATED,
    ELF_LOADED,
    PRIV2_AUTHORIZED_MANAGEMENT,
    PRIV2_FINAL_APPLICATION,
    PRIV2_GLOBAL_DELETE,
    PRIV2_GLOBAL_LOCK,
    PRIV2_GLOBAL_REGISTRY,
    PRIV2_TOKEN_VERIFICATION,
    PRIV2_TRUSTED_PATH,
    PRIV3_CIPHERED_LOAD_FILE,
    PRIV3_CONTACTLESS_ACTIVATION,
    PRIV3_RECEIPT_GENERATION,
    PRIV_CARD_LOCK,
    PRIV_CARD_TERMINATE,
    PRIV_CVM_MANAGEMENT,
    PRIV_DAP_VERIFICATION,
    PRIV_DEFAULT_SELECTED,
    PRIV_DELEGATED_MANAGEMENT,
    PRIV_MANDATED_DAP,
    PRIV_SECURITY_DOMAIN,
    SD_PERSONALIZED,
    SD_SELECTABLE,
    Registry,
    RegistryEntry,
)

if TYPE_CHECKING:
    from ..runtime import SecureElement
    from .security_domain import SecurityDomain

SD_IMPLEMENTATION = "paylab.gp.sd"
OS_SD_LOAD_FILE_AID = gp.OS_SD_LOAD_FILE_AID
OS_SD_MODULE_AID = gp.OS_SD_MODULE_AID

LOAD_SESSION = "gp.load"
GET_STATUS_SESSION = "gp.get_status"
PERSO_TARGET = "perso_target"

MAX_LOAD_FILE = 64 * 1024
GET_STATUS_MAX_RESPONSE = 200
"""Bytes of GET STATUS entries per response: room left for R-MAC and R-ENC padding in 256."""

TAG_PACKAGE_AID = 0xDF70
TAG_PACKAGE_VERSION = 0xDF71
TAG_PACKAGE_MODULE = 0xDF72
TAG_PACKAGE_CODE = 0xDF7F

SW_SECURITY = 0x6982
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_P1P2 = 0x6A86
SW_NOT_FOUND = 0x6A88

_DONE = b"\x00"  # response data of INSTALL/LOAD/DELETE without a receipt

Handler = Callable[["SecurityDomain", ApduContext, CommandApdu], Reply]


# --- the package descriptor (load file data block) ----------------------------------------------

@dataclass(frozen=True)
class PackageDescriptor:
    """paylab's load file data block: which catalog package a load file stands for."""

    package_aid: bytes
    version: str
    modules: tuple[bytes, ...] = ()
    code: bytes = b""

    def encode(self) -> bytes:
        out = tlv.tlv(TAG_PACKAGE_AID, gp.check_aid(self.package_aid, "package AID"))
        out += tlv.tlv(TAG_PACKAGE_VERSION, _version_ascii(self.version))
        out += b"".join(tlv.tlv(TAG_PACKAGE_MODULE, gp.check_aid(m, "module AID")) for m in self.modules)
        if self.code:
            out += tlv.tlv(TAG_PACKAGE_CODE, self.code)
        return out

    @classmethod
    def decode(cls, data: bytes) -> PackageDescriptor:
        """:raises ProtocolError: anything but the format of the module docstring."""
        objects = tlv.decode(data, allow_padding=False)
        tags = [o.tag for o in objects]
        if len(tags) < 2 or tags[0] != TAG_PACKAGE_AID or tags[1] != TAG_PACKAGE_VERSION:
            raise gp.GpCommandError("package descriptor must start with DF70 and DF71", field="load file")
        rest = objects[2:]
        code = b""
        if rest and rest[-1].tag == TAG_PACKAGE_CODE:
            code = rest[-1].value
            rest = rest[:-1]
        modules = []
        for obj in rest:
            if obj.tag != TAG_PACKAGE_MODULE:
                raise gp.GpCommandError(f"package descriptor: unexpected tag {obj.tag:X}", field="load file",
                                        expected="DF72 module AIDs, then an optional DF7F")
            modules.append(gp.check_aid(obj.value, "module AID"))
        if len(set(modules)) != len(modules):
            raise gp.GpCommandError("package descriptor lists a module twice", field="load file")
        try:
            version = objects[1].value.decode("ascii")
        except UnicodeDecodeError:
            raise gp.GpCommandError("package version is not ASCII", field="tag DF71") from None
        return cls(gp.check_aid(objects[0].value, "package AID"), _checked_version(version), tuple(modules), code)


def _version_ascii(version: str) -> bytes:
    try:
        return _checked_version(version).encode("ascii")
    except UnicodeEncodeError:
        raise gp.GpCommandError("package version is not ASCII", field="tag DF71") from None


def _checked_version(version: str) -> str:
    if not 1 <= len(version) <= 32 or not version.isprintable():
        raise gp.GpCommandError(f"package version {version!r}", field="tag DF71", expected="1 to 32 printable chars")
    return version


def build_load_file_data_block(package: PackageInfo, *, code_size: int = 0) -> bytes:
    """The load file data block for ``package`` (what INSTALL [for load] hashes); ``code_size``
    filler bytes stand for the code so that the load takes several LOAD blocks."""
    code = bytes(i & 0xFF for i in range(code_size))
    return PackageDescriptor(package.package_aid, package.version, tuple(package.modules), code).encode()


def build_load_file(package: PackageInfo, *, code_size: int = 0, dap_blocks: Sequence[gp.DapBlock] = ()) -> bytes:
    """The load file a TSM sends with LOAD: ``[E2 DAP]* C4 L <load file data block>``."""
    return gp.LoadFile(build_load_file_data_block(package, code_size=code_size), tuple(dap_blocks)).encode()


# --- keys on the card ---------------------------------------------------------------------------

def public_key_record(public_key: rsa.RSAPublicKey) -> bytes:
    """How a token or DAP verification key is stored: DER SubjectPublicKeyInfo."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def set_token_key(se: SecureElement, public_key: rsa.RSAPublicKey) -> None:
    """Put the delegated management token verification key into the ISD's data and commit
    (card issuance step, outside any APDU)."""
    se.applet_data(se.registry.isd().aid)["token_key"] = public_key_record(public_key)
    se.image.commit()


def set_dap_key(se: SecureElement, sd_aid: bytes, public_key: rsa.RSAPublicKey) -> None:
    """Put a DAP verification key into an SD's data and commit (issuance step)."""
    se.applet_data(sd_aid)["dap_key"] = public_key_record(public_key)
    se.image.commit()


def _load_public_key(record: object) -> rsa.RSAPublicKey | None:
    try:
        if isinstance(record, bytes):
            key = serialization.load_der_public_key(record)
        elif isinstance(record, dict) and isinstance(record.get("n"), bytes):
            exponent = record.get("e", 65537)
            e = int.from_bytes(exponent, "big") if isinstance(exponent, bytes) else int(exponent)
            key = rsa.RSAPublicNumbers(e, int.from_bytes(record["n"], "big")).public_key()
        else:
            return None
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


# --- shared checks ------------------------------------------------------------------------------

def _gp_command(handler: Handler) -> Handler:
    """Protocol errors become status words (never 6F00): GpCommandError's own SW, else 6A80."""
    @functools.wraps(handler)
    def run(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        try:
            return handler(sd, ctx, cmd)
        except gp.GpCommandError as exc:
            raise ISOException(exc.sw, str(exc)) from None
        except ProtocolError as exc:
            raise ISOException(SW_WRONG_DATA, str(exc)) from None
    return run


def _prologue(sd: SecurityDomain, ctx: ApduContext, *, card_open: bool = True) -> None:
    sd.require_authenticated(ctx, level=SecurityLevel.C_MAC)
    ctx.session.pop(GET_STATUS_SESSION, None)
    if card_open and ctx.se.card_state().get("life_cycle") in (CARD_LOCKED, CARD_TERMINATED):
        raise ISOException(SW_CONDITIONS, "card is locked or terminated")


def _privilege(entry: RegistryEntry, index: int, mask: int) -> bool:
    return len(entry.privileges) > index and bool(entry.privileges[index] & mask)


def _privileges3(raw: bytes) -> bytes:
    return (bytes(raw) + b"\x00\x00\x00")[:3]


def _parent(registry: Registry, entry: RegistryEntry) -> bytes | None:
    """The associated SD; entries without one belong to the ISD."""
    if entry.kind == "ISD":
        return None
    if entry.associated_sd is not None:
        return entry.associated_sd
    try:
        return registry.isd().aid
    except LookupError:
        return None


def _in_domain(registry: Registry, entry: RegistryEntry, sd_aid: bytes) -> bool:
    """True when ``entry``'s chain of associated SDs reaches ``sd_aid``."""
    seen: set[bytes] = set()
    parent = _parent(registry, entry)
    while parent is not None and parent not in seen:
        if parent == sd_aid:
            return True
        seen.add(parent)
        above = registry.get(parent)
        parent = _parent(registry, above) if above is not None else None
    return False


def _may_manage(sd: SecurityDomain, ctx: ApduContext, entry: RegistryEntry) -> bool:
    return sd.is_isd(ctx) or _in_domain(ctx.se.registry, entry, ctx.aid)


Management = Literal["authorized", "delegated"]


def _management(sd: SecurityDomain, ctx: ApduContext) -> Management:
    if sd.is_isd(ctx) or _privilege(ctx.entry, 1, PRIV2_AUTHORIZED_MANAGEMENT):
        return "authorized"
    if _privilege(ctx.entry, 0, PRIV_DELEGATED_MANAGEMENT):
        return "delegated"
    raise ISOException(SW_SECURITY, "security domain has neither authorized nor delegated management")


def _check_token(ctx: ApduContext, mode: Management, signed: bytes, token: bytes) -> None:
    """Delegated management: the ISD's token over ``signed`` (GP v2.3 Annex C.4)."""
    if mode == "authorized":
        return
    if not token:
        raise ISOException(SW_SECURITY, "delegated management needs a token")
    try:
        isd = ctx.se.registry.isd()
    except LookupError:
        raise ISOException(SW_CONDITIONS, "no ISD to verify the token") from None
    key = _load_public_key(ctx.se.applet_data(isd.aid).get("token_key"))
    if key is None:
        raise ISOException(SW_CONDITIONS, "no token verification key on the card")
    if not gp.rsa_verify(key, signed, token):
        raise ISOException(SW_SECURITY, "token does not verify")


def _check_grant(sd: SecurityDomain, ctx: ApduContext, privileges: bytes, *, make_selectable: bool) -> None:
    """Privileges an SD may grant (GP v2.3 clause 6.6): consistency for everyone; an SSD only grants
    what it holds itself (DM also under AM) and never the card-wide ones."""
    b1, b2, b3 = _privileges3(privileges)
    is_sd = bool(b1 & PRIV_SECURITY_DOMAIN)
    sd_only = (b1 & (PRIV_DAP_VERIFICATION | PRIV_DELEGATED_MANAGEMENT | PRIV_MANDATED_DAP)
               or b2 & (PRIV2_AUTHORIZED_MANAGEMENT | PRIV2_TOKEN_VERIFICATION | PRIV2_TRUSTED_PATH)
               or b3 & (PRIV3_RECEIPT_GENERATION | PRIV3_CIPHERED_LOAD_FILE))
    if sd_only and not is_sd:
        raise ISOException(SW_WRONG_DATA, "security domain privileges for an application")
    if b1 & PRIV_DELEGATED_MANAGEMENT and b2 & PRIV2_AUTHORIZED_MANAGEMENT:
        raise ISOException(SW_WRONG_DATA, "authorized and delegated management are exclusive")
    if b1 & PRIV_DEFAULT_SELECTED:
        if not make_selectable:
            raise ISOException(SW_WRONG_DATA, "default selected needs make selectable")
        if any(e.kind != "ISD" and _privilege(e, 0, PRIV_DEFAULT_SELECTED) for e in ctx.se.registry):
            raise ISOException(SW_CONDITIONS, "another application is default selected")
    if sd.is_isd(ctx):
        return
    card_wide = ((PRIV_CARD_LOCK | PRIV_CARD_TERMINATE | PRIV_DEFAULT_SELECTED | PRIV_CVM_MANAGEMENT
                  | PRIV_MANDATED_DAP),
                 (PRIV2_AUTHORIZED_MANAGEMENT | PRIV2_TOKEN_VERIFICATION | PRIV2_GLOBAL_DELETE | PRIV2_GLOBAL_LOCK
                  | PRIV2_GLOBAL_REGISTRY | PRIV2_FINAL_APPLICATION),
                 PRIV3_RECEIPT_GENERATION)
    own = _privileges3(ctx.entry.privileges)
    for index, requested in enumerate((b1, b2, b3)):
        if requested & card_wide[index]:
            raise ISOException(SW_WRONG_DATA, "privilege only the ISD grants")
        allowed = own[index]
        if index == 0 and own[1] & PRIV2_AUTHORIZED_MANAGEMENT:
            allowed |= PRIV_DELEGATED_MANAGEMENT
        if requested & ~allowed:
            raise ISOException(SW_WRONG_DATA, "privilege the installing security domain does not hold")


def _ensure_absent(registry: Registry, aid: bytes) -> None:
    if registry.get(aid) is not None:
        raise ISOException(SW_CONDITIONS, f"AID {aid.hex().upper()} already on the card")


def _existing(registry: Registry, aid: bytes, *kinds: str) -> RegistryEntry:
    entry = registry.get(aid)
    if entry is None or (kinds and entry.kind not in kinds):
        raise ISOException(SW_NOT_FOUND, f"{aid.hex().upper()} not found")
    return entry


# --- INSTALL ------------------------------------------------------------------------------------

@_gp_command
def handle_install(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu) -> Reply:
    """INSTALL (GP v2.3 clause 11.5), every variant but the combined load+install."""
    _prologue(sd, ctx)
    if cmd.p2 != 0x00:
        raise ISOException(SW_P1P2, "INSTALL P2 must be 00")
    request = gp.parse_install(cmd.p1, cmd.data)
    if isinstance(request, gp.InstallForLoad):
        return _install_for_load(sd, ctx, cmd, request)
    if isinstance(request, gp.InstallForInstall):
        return _install_for_install(sd, ctx, cmd, request, make_selectable=bool(cmd.p1 & gp.P1_FOR_MAKE_SELECTABLE))
    if isinstance(request, gp.InstallForMakeSelectable):
        return _install_for_make_selectable(sd, ctx, cmd, request)
    if isinstance(request, gp.InstallForPersonalization):
        return _install_for_personalization(sd, ctx, request)
    if isinstance(request, gp.InstallForExtradition):
        return _install_for_extradition(sd, ctx, cmd, request)
    return _install_for_registry_update(sd, ctx, cmd, request)


def _dap_verifiers(registry: Registry, target: RegistryEntry) -> list[bytes]:
    """SDs whose DAP a load into ``target`` needs: DAP Verification in its chain, Mandated DAP anywhere."""
    verifiers: list[bytes] = []
    chain: RegistryEntry | None = target
    seen: set[bytes] = set()
    while chain is not None and chain.aid not in seen:
        seen.add(chain.aid)
        if _privilege(chain, 0, PRIV_DAP_VERIFICATION):
            verifiers.append(chain.aid)
        parent = _parent(registry, chain)
        chain = registry.get(parent) if parent is not None else None
    for entry in registry:
        if entry.is_sd and _privilege(entry, 0, PRIV_MANDATED_DAP) and entry.aid not in verifiers:
            verifiers.append(entry.aid)
    return verifiers


def _install_for_load(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu, request: gp.InstallForLoad) -> Reply:
    ctx.session.pop(LOAD_SESSION, None)
    mode = _management(sd, ctx)
    registry = ctx.se.registry
    target = _existing(registry, request.security_domain_aid or ctx.aid, "ISD", "SD")
    if target.aid != ctx.aid and not _may_manage(sd, ctx, target):
        raise ISOException(SW_CONDITIONS, "target security domain is not in this domain")
    _ensure_absent(registry, request.load_file_aid)
    if request.load_parameters:
        tlv.decode(request.load_parameters, allow_padding=False)
    verifiers = _dap_verifiers(registry, target)
    if (verifiers or mode == "delegated") and not request.load_file_hash:
        raise ISOException(SW_WRONG_DATA, "load file data block hash required (DAP or delegated management)")
    _check_token(ctx, mode, request.token_data(cmd.p1, cmd.p2), request.token)
    ctx.session[LOAD_SESSION] = {"load_file_aid": request.load_file_aid, "sd_aid": target.aid,
                                 "hash": request.load_file_hash, "verifiers": verifiers,
                                 "next_block": 0, "buffer": b""}
    return Reply(_DONE)


def _resolve_module(ctx: ApduContext, elf_aid: bytes, module_aid: bytes) -> str:
    """The implementation name behind a load file's module."""
    if elf_aid == OS_SD_LOAD_FILE_AID and module_aid == OS_SD_MODULE_AID:
        implementation = SD_IMPLEMENTATION
    else:
        elf = _existing(ctx.se.registry, elf_aid, "ELF")
        if module_aid not in elf.modules:
            raise ISOException(SW_NOT_FOUND, f"module {module_aid.hex().upper()} not in the load file")
        package = ctx.se.catalog.package(elf_aid)
        cls = package.modules.get(module_aid) if package is not None else None
        if cls is None:
            raise ISOException(SW_NOT_FOUND, f"no implementation of module {module_aid.hex().upper()}")
        implementation = cls.implementation
    if ctx.se.catalog.implementation(implementation) is None:
        raise ISOException(SW_NOT_FOUND, f"implementation {implementation} not on this card")
    return implementation


def _contactless_parameters(entry: RegistryEntry, params: gp.InstallParameters) -> None:
    """Amendment C install parameters: EF/A0/81 initial state, EF/A1 family and PPSE seed."""
    for obj in params.system_objects():
        if obj.tag == 0xA0:
            for child in obj.children:
                if child.tag == 0x81:
                    if child.value not in (b"\x00", b"\x01", b"\x80"):
                        raise ISOException(SW_WRONG_DATA, "initial contactless state must be 00, 01 or 80")
                    entry.extra["initial_contactless"] = child.value[0]
        elif obj.tag == 0xA1:
            for child in obj.children:
                if child.tag == 0x87 and len(child.value) == 1:
                    entry.extra["family"] = child.value[0]
                elif child.tag == 0xA6:
                    _directory_seed(entry, child)


def _directory_seed(entry: RegistryEntry, a6: tlv.Tlv) -> None:
    template = tlv.find(a6.children, 0x61)
    if template is None:
        return
    values = tlv.to_dict(template.children)
    if 0x50 in values:
        entry.extra["label"] = values[0x50].decode("ascii", errors="replace")
    if len(values.get(0x87, b"")) == 1:
        entry.contactless_priority = values[0x87][0]
    if 0x9F2A in values:
        entry.extra["kernel_id"] = values[0x9F2A]


def _made_selectable(entry: RegistryEntry) -> None:
    entry.life_cycle = APP_SELECTABLE
    state = entry.extra.get("initial_contactless")
    if state == 0x01:
        entry.contactless_activated = True
    elif state == 0x80:
        entry.extra["contactless_non_activatable"] = True


def _install_for_install(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu, request: gp.InstallForInstall,
                         *, make_selectable: bool) -> Reply:
    mode = _management(sd, ctx)
    registry = ctx.se.registry
    _ensure_absent(registry, request.application_aid)
    params = request.install_parameters
    privileges = _privileges3(request.privileges)
    creating_sd = bool(privileges[0] & PRIV_SECURITY_DOMAIN)
    implementation = _resolve_module(ctx, request.load_file_aid, request.module_aid)
    if creating_sd != (implementation == SD_IMPLEMENTATION):
        raise ISOException(SW_WRONG_DATA, "the security domain privilege and the module do not match")
    _check_grant(sd, ctx, privileges, make_selectable=make_selectable)
    _check_token(ctx, mode, request.token_data(cmd.p1, cmd.p2), request.token)
    entry = RegistryEntry(aid=request.application_aid, kind="SD" if creating_sd else "APP",
                          life_cycle=APP_INSTALLED, privileges=privileges, associated_sd=ctx.aid,
                          elf_aid=request.load_file_aid, module_aid=request.module_aid,
                          implementation=implementation)
    _contactless_parameters(entry, params)
    if make_selectable:
        _made_selectable(entry)
    registry.put(entry)
    system = {obj.tag: obj.value for obj in params.system_objects()}
    install_params = InstallParams(privileges=privileges, app_specific=params.application or b"", system=system,
                                   raw=request.parameters)
    applet = ctx.se.applet(entry)
    try:
        applet.install(ctx.se.context(entry, ctx.channel), install_params)
    except BaseException:
        ctx.se.forget_applet(entry.aid)
        raise
    return Reply(_DONE)


def _install_for_make_selectable(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu,
                                 request: gp.InstallForMakeSelectable) -> Reply:
    mode = _management(sd, ctx)
    registry = ctx.se.registry
    entry = _existing(registry, request.application_aid, "APP", "SD")
    if not _may_manage(sd, ctx, entry):
        raise ISOException(SW_CONDITIONS, "application is not in this domain")
    if entry.life_cycle != APP_INSTALLED:
        raise ISOException(SW_CONDITIONS, "application is not in the INSTALLED state")
    if request.privileges:
        privileges = _privileges3(request.privileges)
        if (privileges[0] ^ _privileges3(entry.privileges)[0]) & PRIV_SECURITY_DOMAIN:
            raise ISOException(SW_WRONG_DATA, "make selectable cannot add or remove the SD privilege")
        _check_grant(sd, ctx, privileges, make_selectable=True)
        entry.privileges = privileges
    if request.parameters:
        _contactless_parameters(entry, gp.InstallParameters.decode(request.parameters))
    _check_token(ctx, mode, request.token_data(cmd.p1, cmd.p2), request.token)
    _made_selectable(entry)
    registry.put(entry)
    return Reply(_DONE)


def _install_for_personalization(sd: SecurityDomain, ctx: ApduContext,
                                 request: gp.InstallForPersonalization) -> Reply:
    entry = _existing(ctx.se.registry, request.application_aid, "APP", "SD")
    if _parent(ctx.se.registry, entry) != ctx.aid:
        raise ISOException(SW_CONDITIONS, "application is not associated with this security domain")
    if entry.locked:
        raise ISOException(SW_CONDITIONS, "application is locked")
    ctx.session[PERSO_TARGET] = entry.aid
    return Reply(_DONE)


def _check_extradition(sd: SecurityDomain, ctx: ApduContext, target: RegistryEntry, new_sd_aid: bytes) -> None:
    registry = ctx.se.registry
    new_sd = _existing(registry, new_sd_aid, "ISD", "SD")
    if target.kind == "ISD" or target.extra.get("os"):
        raise ISOException(SW_CONDITIONS, "the ISD and OS applications stay where they are")
    if not _may_manage(sd, ctx, target):
        raise ISOException(SW_CONDITIONS, "entry is not in this domain")
    if new_sd.aid == target.aid or (target.is_sd and _in_domain(registry, new_sd, target.aid)):
        raise ISOException(SW_CONDITIONS, "extradition would make a cycle of security domains")


def _install_for_extradition(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu,
                             request: gp.InstallForExtradition) -> Reply:
    mode = _management(sd, ctx)
    registry = ctx.se.registry
    target = _existing(registry, request.application_aid)
    _check_extradition(sd, ctx, target, request.security_domain_aid)
    _check_token(ctx, mode, request.token_data(cmd.p1, cmd.p2), request.token)
    target.associated_sd = request.security_domain_aid
    registry.put(target)
    return Reply(_DONE)


def _install_for_registry_update(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu,
                                 request: gp.InstallForRegistryUpdate) -> Reply:
    mode = _management(sd, ctx)
    registry = ctx.se.registry
    if not request.application_aid:
        raise ISOException(SW_WRONG_DATA, "registry update of the OPEN defaults is not supported")
    target = _existing(registry, request.application_aid, "APP", "SD")
    if request.security_domain_aid:
        _check_extradition(sd, ctx, target, request.security_domain_aid)
    elif not _may_manage(sd, ctx, target):
        raise ISOException(SW_CONDITIONS, "application is not in this domain")
    if request.privileges:
        privileges = _privileges3(request.privileges)
        if (privileges[0] ^ _privileges3(target.privileges)[0]) & PRIV_SECURITY_DOMAIN:
            raise ISOException(SW_WRONG_DATA, "registry update cannot add or remove the SD privilege")
        _check_grant(sd, ctx, privileges, make_selectable=target.selectable)
        target.privileges = privileges
    if request.parameters:
        _contactless_parameters(target, gp.InstallParameters.decode(request.parameters))
    _check_token(ctx, mode, request.token_data(cmd.p1, cmd.p2), request.token)
    if request.security_domain_aid:
        target.associated_sd = request.security_domain_aid
    registry.put(target)
    return Reply(_DONE)


# --- LOAD ---------------------------------------------------------------------------------------

@_gp_command
def handle_load(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu) -> Reply:
    """LOAD (GP v2.3 clause 11.6): blocks collected in the SD's session, checked on the last one."""
    _prologue(sd, ctx)
    pending = ctx.session.get(LOAD_SESSION)
    if pending is None:
        raise ISOException(SW_CONDITIONS, "LOAD without INSTALL [for load]")
    if cmd.p1 not in (gp.P1_LOAD_MORE_BLOCKS, gp.P1_LOAD_LAST_BLOCK) or cmd.p2 != pending["next_block"]:
        ctx.session.pop(LOAD_SESSION, None)
        raise ISOException(SW_P1P2, f"LOAD block {cmd.p2:02X}, expected {pending['next_block']:02X}: load aborted")
    buffer = pending["buffer"] + cmd.data
    if len(buffer) > MAX_LOAD_FILE:
        ctx.session.pop(LOAD_SESSION, None)
        raise ISOException(SW_NOT_ENOUGH_MEMORY, "load file too large: load aborted")
    pending["buffer"] = buffer
    pending["next_block"] += 1
    if cmd.p1 != gp.P1_LOAD_LAST_BLOCK:
        return Reply(_DONE)
    ctx.session.pop(LOAD_SESSION, None)
    _complete_load(ctx, pending)
    return Reply(_DONE)


def _complete_load(ctx: ApduContext, pending: dict[str, Any]) -> None:
    load_file = gp.LoadFile.decode(pending["buffer"])
    if load_file.ciphered:
        raise ISOException(SW_WRONG_DATA, "ciphered load file data blocks are not supported")
    block = load_file.data_block
    digest: bytes = pending["hash"]
    if digest and not hmac.compare_digest(hashlib.new(gp.hash_algorithm_of(digest), block).digest(), digest):
        raise ISOException(SW_WRONG_DATA, "load file data block hash does not match")
    for verifier in pending["verifiers"]:
        dap = next((d for d in load_file.dap_blocks if d.security_domain_aid == verifier), None)
        if dap is None:
            raise ISOException(SW_WRONG_DATA, f"DAP block of {verifier.hex().upper()} missing")
        key = _load_public_key(ctx.se.applet_data(verifier).get("dap_key"))
        if key is None:
            raise ISOException(SW_CONDITIONS, f"no DAP key in {verifier.hex().upper()}")
        if not gp.rsa_verify(key, digest, dap.signature):
            raise ISOException(SW_SECURITY, f"DAP of {verifier.hex().upper()} does not verify")
    descriptor = PackageDescriptor.decode(block)
    elf_aid: bytes = pending["load_file_aid"]
    if descriptor.package_aid != elf_aid:
        raise ISOException(SW_WRONG_DATA, "package AID differs from the INSTALL [for load] load file AID")
    package = ctx.se.catalog.package(descriptor.package_aid)
    if package is None:
        raise ISOException(SW_WRONG_DATA, f"unknown package {elf_aid.hex().upper()}")
    if package.version != descriptor.version or set(package.modules) != set(descriptor.modules):
        raise ISOException(SW_WRONG_DATA, "package version or modules differ from the card's catalog")
    registry = ctx.se.registry
    _ensure_absent(registry, elf_aid)
    _existing(registry, pending["sd_aid"], "ISD", "SD")
    registry.put(RegistryEntry(aid=elf_aid, kind="ELF", life_cycle=ELF_LOADED, privileges=b"\x00\x00\x00",
                               associated_sd=pending["sd_aid"], modules=list(descriptor.modules),
                               extra={"version": descriptor.version}))


# --- DELETE -------------------------------------------------------------------------------------

@_gp_command
def handle_delete(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu) -> Reply:
    """DELETE [card content] (GP v2.3 clause 11.2)."""
    _prologue(sd, ctx)
    try:
        first = tlv.decode(cmd.data, allow_padding=False)[:1]
    except TlvError:
        first = []
    if first and first[0].tag in (0xD0, 0xD2):
        raise ISOException(SW_FUNCTION_NOT_SUPPORTED, "DELETE [key] is not supported")
    request = gp.DeleteCommand.decode(cmd.data, p1=cmd.p1, p2=cmd.p2)
    mode = _management(sd, ctx)
    registry = ctx.se.registry
    target = _existing(registry, request.aid)
    if target.kind == "ISD" or target.extra.get("os") or target.aid == ctx.aid:
        raise ISOException(SW_CONDITIONS, "the ISD, OS applications and the current SD cannot be deleted")
    if not (_may_manage(sd, ctx, target) or _privilege(ctx.entry, 1, PRIV2_GLOBAL_DELETE)):
        raise ISOException(SW_CONDITIONS, "entry is not in this domain")
    victims = _deletion_set(registry, target, request.related_objects)
    _check_token(ctx, mode, request.token_data(), request.token)
    for victim in sorted(victims, key=lambda e: e.kind == "ELF"):  # instances before load files
        _remove(ctx, victim)
    return Reply(_DONE)


def _deletion_set(registry: Registry, target: RegistryEntry, related: bool) -> list[RegistryEntry]:
    out: dict[bytes, RegistryEntry] = {}

    def collect(entry: RegistryEntry) -> None:
        if entry.aid in out:
            return
        if entry.kind == "ISD" or entry.extra.get("os"):
            raise ISOException(SW_CONDITIONS, f"{entry.aid.hex().upper()} cannot be deleted")
        out[entry.aid] = entry
        if entry.kind == "ELF":
            dependents = [e for e in registry if e.kind != "ELF" and e.elf_aid == entry.aid]
            what = "load file has instances"
        elif entry.kind == "SD":
            dependents = [e for e in registry if e.associated_sd == entry.aid]
            what = "security domain has associated entries"
        else:
            dependents = []
            what = ""
        if dependents and not related:
            raise ISOException(SW_CONDITIONS, f"{what}: DELETE with P2 80 deletes them too")
        for dependent in dependents:
            collect(dependent)

    collect(target)
    return list(out.values())


def _remove(ctx: ApduContext, entry: RegistryEntry) -> None:
    se = ctx.se
    if entry.kind != "ELF" and se.catalog.implementation(entry.implementation or "") is not None:
        se.applet(entry).uninstall(se.context(entry, ctx.channel))
    se.registry.remove(entry.aid)
    se.image.state.get("applets", {}).pop(entry.aid.hex().upper(), None)
    se.forget_applet(entry.aid)
    if ctx.session.get(PERSO_TARGET) == entry.aid:
        ctx.session.pop(PERSO_TARGET, None)


# --- GET STATUS ---------------------------------------------------------------------------------

@_gp_command
def handle_get_status(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu) -> Reply:
    """GET STATUS (GP v2.3 clause 11.4), TLV and legacy formats, 6310 continuation."""
    sd.require_authenticated(ctx, level=SecurityLevel.C_MAC)
    request = gp.GetStatusCommand.decode(cmd.p1, cmd.p2, cmd.data)
    if request.next_occurrence:
        pending = ctx.session.get(GET_STATUS_SESSION)
        if pending is None or pending["scope"] != request.scope or pending["tlv"] != request.tlv_format:
            ctx.session.pop(GET_STATUS_SESSION, None)
            raise ISOException(SW_CONDITIONS, "no GET STATUS to continue")
        entries: list[bytes] = pending["entries"]
    else:
        ctx.session.pop(GET_STATUS_SESSION, None)
        entries = _status_entries(sd, ctx, request)
        if not entries:
            raise ISOException(SW_NOT_FOUND, "no matching registry entry")
    data, size = b"", 0
    while size < len(entries) and (not data or len(data) + len(entries[size]) <= GET_STATUS_MAX_RESPONSE):
        data += entries[size]
        size += 1
    rest = entries[size:]
    if rest:
        ctx.session[GET_STATUS_SESSION] = {"scope": request.scope, "tlv": request.tlv_format, "entries": rest}
        return Reply(data, 0x6310)
    ctx.session.pop(GET_STATUS_SESSION, None)
    return Reply(data)


def _version_number(version: str | None) -> bytes | None:
    """CE, the load file version: ``1.2`` -> ``01 02``, else the ASCII text."""
    if not version:
        return None
    parts = version.split(".")
    if all(p.isascii() and p.isdigit() and int(p) <= 0xFF for p in parts):
        return bytes(int(p) for p in parts)
    return version.encode("ascii", errors="replace")


def _status_entries(sd: SecurityDomain, ctx: ApduContext, request: gp.GetStatusCommand) -> list[bytes]:
    registry = ctx.se.registry
    sees_all = sd.is_isd(ctx) or _privilege(ctx.entry, 1, PRIV2_GLOBAL_REGISTRY)
    if request.scope == gp.GET_STATUS_ISD and not sees_all:
        raise ISOException(SW_P1P2, "the ISD is visible to the ISD only")
    kinds = {gp.GET_STATUS_ISD: ("ISD",), gp.GET_STATUS_APPLICATIONS: ("APP", "SD"),
             gp.GET_STATUS_LOAD_FILES: ("ELF",), gp.GET_STATUS_LOAD_FILES_AND_MODULES: ("ELF",)}[request.scope]
    card_life_cycle = ctx.se.card_state().get("life_cycle")
    tags = set(request.tag_list) if request.tag_list is not None else None
    out = []
    for entry in registry:
        if entry.kind not in kinds or not entry.aid.startswith(request.aid_prefix):
            continue
        if not sees_all and not _in_domain(registry, entry, ctx.aid):
            continue
        life_cycle = card_life_cycle if entry.kind == "ISD" and card_life_cycle is not None else entry.life_cycle
        if entry.kind == "ELF":
            status = gp.GetStatusEntry(entry.aid, life_cycle, None, None, _version_number(entry.extra.get("version")),
                                       tuple(entry.modules) if request.scope == gp.GET_STATUS_LOAD_FILES_AND_MODULES
                                       else (), _parent(registry, entry))
        else:
            status = gp.GetStatusEntry(entry.aid, life_cycle, _privileges3(entry.privileges), entry.elf_aid, None, (),
                                       _parent(registry, entry))
        out.append(status.encode_tlv(tags) if request.tlv_format else status.encode_legacy(request.scope))
    return out


# --- SET STATUS ---------------------------------------------------------------------------------

@_gp_command
def handle_set_status(sd: SecurityDomain, ctx: ApduContext, cmd: CommandApdu) -> Reply:
    """SET STATUS (GP v2.3 clause 11.10; Amendment C 3.11.4 for P1 01)."""
    _prologue(sd, ctx, card_open=cmd.p1 != gp.SET_STATUS_ISD)
    request = gp.parse_set_status(cmd.p1, cmd.p2, cmd.data)
    if isinstance(request, gp.SetAvailability):
        return _set_availability(sd, ctx, request)
    if request.scope == gp.SET_STATUS_ISD:
        return _set_card_status(sd, ctx, request)
    return _set_application_status(sd, ctx, request)


def _set_card_status(sd: SecurityDomain, ctx: ApduContext, request: gp.SetStatusCommand) -> Reply:
    if request.aid:
        _existing(ctx.se.registry, request.aid, "ISD")
    sd.set_card_life_cycle(ctx, request.state)  # transitions and card lock/terminate privileges: 6985
    return Reply()


def _transition(sd: SecurityDomain, ctx: ApduContext, entry: RegistryEntry, state: int) -> None:
    """Application / SD life cycle (GP v2.3 clause 5.3): P2 b8 locks (keeping the state below it),
    P2 without b8 on a locked entry unlocks (whatever the other bits: GlobalPlatformPro sends 00, older
    tools 03/07); otherwise an application moves to an application-specific state (b3-b1 = 111) and
    an SD goes SELECTABLE -> PERSONALIZED (the SD's :meth:`set_sd_life_cycle`, which also closes the
    secure channels of a locked SD)."""
    if state & APP_LOCKED_BIT:
        target = entry.life_cycle | APP_LOCKED_BIT
    elif entry.locked:
        target = entry.life_cycle & ~APP_LOCKED_BIT & 0xFF
    elif entry.kind == "SD":
        if not (state == SD_PERSONALIZED and entry.life_cycle == SD_SELECTABLE):
            raise ISOException(SW_CONDITIONS, f"SD life cycle {entry.life_cycle:02X} -> {state:02X} not allowed")
        target = state
    else:
        if state & 0x07 != 0x07:
            raise ISOException(SW_P1P2, f"application state {state:02X} must keep b3-b1 = 111")
        if entry.life_cycle & 0x07 != 0x07:
            raise ISOException(SW_CONDITIONS, "application is not selectable yet")
        target = state
    if entry.kind == "SD":
        sd.set_sd_life_cycle(ctx, entry.aid, target)
    else:
        entry.life_cycle = target
        ctx.se.registry.put(entry)


def _set_application_status(sd: SecurityDomain, ctx: ApduContext, request: gp.SetStatusCommand) -> Reply:
    registry = ctx.se.registry
    target = _existing(registry, request.aid, "ISD", "APP", "SD")
    if target.kind == "ISD":
        raise ISOException(SW_CONDITIONS, "the ISD's state is the card life cycle (P1 80)")
    lock_or_unlock = bool(request.state & APP_LOCKED_BIT) or target.locked
    if not (_may_manage(sd, ctx, target) or (lock_or_unlock and _privilege(ctx.entry, 1, PRIV2_GLOBAL_LOCK))):
        raise ISOException(SW_CONDITIONS, "entry is not in this domain")
    if request.scope == gp.SET_STATUS_APPLICATION:
        _transition(sd, ctx, target, request.state)
        return Reply()
    if target.kind != "SD":
        raise ISOException(SW_WRONG_DATA, "P1 60 needs a security domain")
    if request.state not in (0x00, APP_LOCKED_BIT):
        raise ISOException(SW_P1P2, "P1 60 only locks (80) or unlocks (00)")
    group = [target] + [e for e in registry if e.kind in ("APP", "SD") and _in_domain(registry, e, target.aid)]
    for entry in group:
        if request.state or entry.locked:
            _transition(sd, ctx, entry, request.state)
    return Reply()


def _set_availability(sd: SecurityDomain, ctx: ApduContext, request: gp.SetAvailability) -> Reply:
    registry = ctx.se.registry
    privileged = sd.is_isd(ctx) or _privilege(ctx.entry, 2, PRIV3_CONTACTLESS_ACTIVATION)
    failed: list[bytes] = []
    for target in request.targets:
        entry = registry.get(target.aid)
        usable = (entry is not None and entry.kind == "APP" and not entry.extra.get("os")
                  and (privileged or _in_domain(registry, entry, ctx.aid)))
        if entry is None or not usable or (request.activate and (
                not entry.selectable or entry.extra.get("contactless_non_activatable"))):
            failed.append(target.aid)
            continue
        entry.contactless_activated = request.activate
        if target.priority is not None:
            entry.contactless_priority = target.priority
        registry.put(entry)
    if failed:
        return Reply(tlv.tlv(gp.TAG_FAILED_AIDS, b"".join(tlv.tlv(gp.TAG_AID, aid) for aid in failed)), 0x6320)
    return Reply()
