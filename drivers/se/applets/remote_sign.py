"""SE-mode remote-payment signing applet (domain brief section 7, "SE-based").

The wallet hashes the order with :func:`paylab.lab.protocol.remote_payment.order_digest`, verifies
the user's PIN and has the applet sign the digest with a key pair that was **generated on the
card** at personalisation; the server checks the signature with
:func:`~paylab.lab.protocol.remote_payment.verify_order_signature` and the certificate the issuer's
CA made for the card's public key.

AIDs (paylab's own, under the UnionPay RID ``A000000333`` + ASCII ``PAYLABS``):

* package (executable load file) ``A0000003335041594C414253``;
* module (applet class) ``A0000003335041594C414253525301`` (package + ``RS`` + ``01``), also the
  default instance AID.

Commands (the byte builders are in :mod:`paylab.lab.protocol.remote_payment`):

=====================  ==================  =====================  ==============  =========================
Command                CLA INS P1 P2       Data                   Response        Status words
=====================  ==================  =====================  ==============  =========================
VERIFY PIN             00 20 00 81         PIN block, format 2    --              9000; 63Cx wrong (x tries
                                           (8 bytes); none:                       left); 6983 blocked; 6A80
                                           ask the tries left                     bad block; 6A88 no PIN
GENERATE KEY PAIR      80 46 00 00 00      --                     7F49 template   6985 once personalised
GET PUBLIC KEY         80 4A off off Le    --                     key[off:+Ne]    9000 end; 6310 more
                                                                                  follows; 6A88; 6B00
GET CERTIFICATE        80 4C off off Le    --                     cert[off:+Ne]   as GET PUBLIC KEY
SIGN ORDER DIGEST      80 2A 9E 9A 20 00   SM3 order digest       r‖s (64) or     6982 PIN not verified in
                                           (32 bytes)             RSA sig (256)   this session; 6983;
                                                                                  6985 not personalised;
                                                                                  6700 digest length
STORE DATA (via SD)    80 E2 P1 blk        DGIs or BER-TLVs       7F49 template   6A80 bad element; 6985
                                           (see below)            on keygen       order / incomplete
=====================  ==================  =====================  ==============  =========================

``off`` is a 15-bit offset (P1 P2): objects longer than one short response (an RSA-2048 key
template is 270 bytes) are read in chunks. Secure messaging is not supported (6882); a wrong class
answers 6E00, an unknown instruction 6D00. PIN verification lasts for the session (until
deselection or reset) and SIGN ORDER DIGEST needs it: SM2 signs e = SM3(Z_A ‖ digest) with the
personalised user ID (default ``1234567812345678``); RSA is PKCS#1 v1.5 with SHA-256 over the digest.

Personalisation (GP ``processData``: STORE DATA forwarded by the associated security domain, P1
b5b4 = 01/00 DGI or 10 BER-TLV; b7b6 must be 00: the security domain decrypts DEK-encrypted DGIs
before forwarding them, application-dependent encryption is not supported). The
data may be cut anywhere across STORE DATA commands. Elements (DGI / BER tag):

* ``0201`` / ``DF21`` algorithm (``01`` SM2, ``02`` RSA-2048); ``0202`` / ``DF22`` SM2 user ID;
* ``9010`` / ``DF25`` PIN try limit (1..15); ``8010`` / ``DF24`` PIN block (format 2; when the
  SD decrypted it from a DEK-encrypted STORE DATA, block padding ``80 00..`` or ``00..`` is ignored);
* ``0210`` / ``DF26`` (empty) generate the key pair: the STORE DATA answers the public key, which
  the issuer's CA certifies;
* ``0203`` / ``DF23`` the certificate (X.509 DER or paylab compact), checked to certify the card's key.

The last STORE DATA block (P1 b8) completes the personalisation when the PIN, the key pair and
the certificate are present (else 6985): the application life cycle becomes 0F (personalised);
from then on GENERATE KEY PAIR and STORE DATA answer 6985.

Persistent data (``ctx.data``): ``algorithm``, ``user_id``, ``pin_try_limit``, ``pin_tries_left``,
``public_key`` (7F49), ``certificate``, ``personalised``, ``perso_buffer`` and ``secure_store``
(PIN block and private key: SM2 d or RSA PKCS#8 DER), which no command ever returns.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from paylab.lab.protocol import remote_payment as rp
from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.crypto.sm2 import DEFAULT_USER_ID
from paylab.lab.protocol.errors import TlvError

from ..applet import ApduContext, Applet, InstallParams, Reply
from ..catalog import PackageInfo
from ..errors import ISOException
from ..registry import APP_PERSONALIZED

PACKAGE_AID = bytes.fromhex("A0000003335041594C414253")
MODULE_AID = PACKAGE_AID + b"RS\x01"

SECURE_STORE = "secure_store"
"""Key of ``ctx.data`` holding the PIN block and the private key; never sent out."""

DEFAULT_PIN_TRY_LIMIT = 3
_ITEMS_BY_DGI = {dgi: name for name, (dgi, _) in rp.PERSO_ITEMS.items()}
_ITEMS_BY_TAG = {tag: name for name, (_, tag) in rp.PERSO_ITEMS.items()}


def _next_item(buf: bytes, pos: int, fmt: str) -> tuple[int, int, int] | None:
    """``(key, value start, value end)`` of the DGI/TLV at ``pos``, or None if it is incomplete."""
    if fmt == "dgi":
        if len(buf) - pos < 3:
            return None
        key, length, start = int.from_bytes(buf[pos:pos + 2], "big"), buf[pos + 2], pos + 3
        if length == 0xFF:
            if len(buf) - pos < 5:
                return None
            length, start = int.from_bytes(buf[pos + 3:pos + 5], "big"), pos + 5
    else:
        at = pos + 1  # past the tag: a multi-byte tag ends with a byte whose b8 is 0 (ISO/IEC 7816-4 5.2)
        if buf[pos] & 0x1F == 0x1F:
            while at < len(buf) and buf[at] & 0x80:
                at += 1
            at += 1
        if at >= len(buf) or at + 1 + (buf[at] & 0x7F if buf[at] > 0x80 else 0) > len(buf):
            return None
        try:
            key, at = tlv.parse_tag(buf, pos)
            length, start = tlv.parse_length(buf, at)
        except TlvError as exc:
            raise ISOException(0x6A80, f"STORE DATA: {exc}") from exc
    end = start + length
    return None if end > len(buf) else (key, start, end)


class RemoteSignApplet(Applet):
    """The signing applet (see the module docstring for its commands and data)."""

    implementation: ClassVar[str] = "paylab.remote_sign"

    # -- life cycle ----------------------------------------------------------------------------
    def install(self, ctx: ApduContext, params: InstallParams) -> None:
        self._data(ctx)

    @staticmethod
    def _data(ctx: ApduContext) -> dict[str, Any]:
        data = ctx.data
        if "algorithm" not in data:
            data.update(algorithm="sm2", user_id=DEFAULT_USER_ID, pin_try_limit=DEFAULT_PIN_TRY_LIMIT,
                        pin_tries_left=DEFAULT_PIN_TRY_LIMIT, personalised=False, perso_buffer=b"")
            data[SECURE_STORE] = {}
        return data

    def select(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        return tlv.tlv(0x6F, tlv.tlv(0x84, self.aid))

    # -- commands ------------------------------------------------------------------------------
    def process(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        data = self._data(ctx)
        if cmd.secure_messaging:
            raise ISOException(0x6882, "secure messaging not supported")
        proprietary = bool(cmd.cla & 0x80)
        if cmd.ins == rp.INS_VERIFY:
            if proprietary:
                raise ISOException(0x6E00, "VERIFY is an interindustry command")
            return self._verify(ctx, data, cmd)
        if cmd.ins not in (rp.INS_GENERATE_KEY_PAIR, rp.INS_GET_PUBLIC_KEY, rp.INS_GET_CERTIFICATE,
                           rp.INS_SIGN_ORDER_DIGEST):
            raise ISOException(0x6D00, f"INS {cmd.ins:02X} not supported")
        if not proprietary:
            raise ISOException(0x6E00, "proprietary command needs CLA 8x")
        if cmd.ins == rp.INS_GENERATE_KEY_PAIR:
            return self._generate_command(ctx, data, cmd)
        if cmd.ins == rp.INS_GET_PUBLIC_KEY:
            return self._read(data.get("public_key"), cmd)
        if cmd.ins == rp.INS_GET_CERTIFICATE:
            return self._read(data.get("certificate"), cmd)
        return self._sign(ctx, data, cmd)

    def _verify(self, ctx: ApduContext, data: dict[str, Any], cmd: CommandApdu) -> Reply:
        if cmd.p1 != 0x00:
            raise ISOException(0x6A86, "VERIFY P1 must be 00")
        pin = data[SECURE_STORE].get("pin")
        if cmd.p2 != rp.PIN_REFERENCE or pin is None:
            raise ISOException(0x6A88, "no such PIN")
        left = data["pin_tries_left"]
        if left == 0:
            raise ISOException(0x6983, "PIN blocked")
        if not cmd.data:
            return Reply(sw=0x9000 if ctx.session.get("pin_verified") else 0x63C0 | left)
        if not rp.check_pin_block(cmd.data):
            raise ISOException(0x6A80, "not a format 2 PIN block")
        ctx.session["pin_verified"] = False
        data["pin_tries_left"] = left - 1  # decremented before the comparison, as cards do against tearing
        if not hmac.compare_digest(cmd.data, pin):
            return Reply(sw=0x63C0 | (left - 1))
        data["pin_tries_left"] = data["pin_try_limit"]
        ctx.session["pin_verified"] = True
        return Reply()

    def _generate_command(self, ctx: ApduContext, data: dict[str, Any], cmd: CommandApdu) -> bytes:
        if cmd.p1 or cmd.p2 or cmd.data:
            raise ISOException(0x6A86, "GENERATE KEY PAIR is 80 46 00 00 without data")
        if data["personalised"]:
            raise ISOException(0x6985, "key pairs are generated at personalisation only")
        return self._generate(ctx, data)

    @staticmethod
    def _generate(ctx: ApduContext, data: dict[str, Any]) -> bytes:
        algorithm = data["algorithm"]
        private = (rp.generate_sm2_private(ctx.random_bytes(32)) if algorithm == "sm2"
                   else rp.generate_rsa_private())
        public = rp.public_key_of(algorithm, private).encode()
        data[SECURE_STORE]["private_key"] = private
        data["public_key"] = public
        data.pop("certificate", None)  # a certificate is for the previous key
        return public

    @staticmethod
    def _read(value: bytes | None, cmd: CommandApdu) -> Reply:
        if value is None:
            raise ISOException(0x6A88, "object not personalised")
        offset = cmd.p1 << 8 | cmd.p2
        if offset >= len(value):
            raise ISOException(0x6B00, f"offset {offset} beyond the {len(value)} bytes")
        chunk = value[offset:offset + (cmd.le or 256)]
        return Reply(chunk, 0x9000 if offset + len(chunk) == len(value) else rp.SW_MORE_DATA)

    @staticmethod
    def _sign(ctx: ApduContext, data: dict[str, Any], cmd: CommandApdu) -> bytes:
        if cmd.p1 << 8 | cmd.p2 != rp.P1P2_SIGN_ORDER_DIGEST:
            raise ISOException(0x6A86, "SIGN ORDER DIGEST P1 P2 must be 9E 9A")
        if not data["personalised"]:
            raise ISOException(0x6985, "not personalised")
        if data["pin_tries_left"] == 0:
            raise ISOException(0x6983, "PIN blocked")
        if not ctx.session.get("pin_verified"):
            raise ISOException(0x6982, "PIN not verified in this session")
        if len(cmd.data) != rp.DIGEST_LENGTH:
            raise ISOException(0x6700, "the order digest is 32 bytes")
        return rp.sign_message(data["algorithm"], data[SECURE_STORE]["private_key"], cmd.data, data["user_id"])

    # -- personalisation -----------------------------------------------------------------------
    def process_data(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        data = self._data(ctx)
        if data["personalised"]:
            raise ISOException(0x6985, "already personalised")
        if cmd.p1 & 0x60:
            raise ISOException(0x6A80, "encrypted personalisation data is not supported")
        structure = (cmd.p1 >> 3) & 0x03
        if structure == 0x03:
            raise ISOException(0x6A86, "STORE DATA P1 data structure 11 is RFU")
        fmt, names = ("ber", _ITEMS_BY_TAG) if structure == 0x02 else ("dgi", _ITEMS_BY_DGI)
        buf, pos, out = data["perso_buffer"] + cmd.data, 0, b""
        while pos < len(buf) and (item := _next_item(buf, pos, fmt)) is not None:
            key, start, pos = item
            name = names.get(key)
            if name is None:
                raise ISOException(0x6A80, f"unknown personalisation element {key:04X}")
            out += self._personalise(ctx, data, name, buf[start:pos])
        data["perso_buffer"] = buf[pos:]
        if cmd.p1 & 0x80:
            self._complete(ctx, data)
        return out

    def _personalise(self, ctx: ApduContext, data: dict[str, Any], name: str, value: bytes) -> bytes:
        store = data[SECURE_STORE]
        if name == "algorithm":
            algorithm = rp.ALGORITHMS_BY_CODE.get(value[0]) if len(value) == 1 else None
            if algorithm is None:
                raise ISOException(0x6A80, "algorithm must be 01 (SM2) or 02 (RSA-2048)")
            if "private_key" in store and algorithm != data["algorithm"]:
                raise ISOException(0x6985, "a key pair of the other algorithm exists")
            data["algorithm"] = algorithm
        elif name == "user_id":
            if not 1 <= len(value) <= 255:
                raise ISOException(0x6A80, "user ID must be 1..255 bytes")
            data["user_id"] = value
        elif name == "pin_try_limit":
            if len(value) not in (1, 2) or not 1 <= value[-1] <= 15:
                raise ISOException(0x6A80, "PIN try limit must be 1..15")
            data["pin_try_limit"] = data["pin_tries_left"] = value[-1]
        elif name == "pin":
            # a DEK-encrypted DGI reaches the applet decrypted but padded to the cipher block (80 00.. or 00..)
            block, padding = value[:8], value[8:].rstrip(b"\x00")
            if not rp.check_pin_block(block) or padding not in (b"", b"\x80") or len(value) > 16:
                raise ISOException(0x6A80, "PIN must be a format 2 PIN block")
            store["pin"] = block
            data["pin_tries_left"] = data["pin_try_limit"]
        elif name == "generate_key_pair":
            if value:
                raise ISOException(0x6A80, "the key pair generation element is empty")
            return self._generate(ctx, data)
        elif name == "certificate":
            self._store_certificate(data, value)
        return b""

    @staticmethod
    def _store_certificate(data: dict[str, Any], certificate: bytes) -> None:
        if "public_key" not in data:
            raise ISOException(0x6985, "generate the key pair before storing its certificate")
        try:
            certified = rp.certificate_public_key(certificate)
        except rp.RemotePaymentError as exc:
            raise ISOException(0x6A80, f"certificate: {exc}") from exc
        if certified.encode() != data["public_key"]:
            raise ISOException(0x6A80, "the certificate is for another public key")
        data["certificate"] = certificate

    @staticmethod
    def _complete(ctx: ApduContext, data: dict[str, Any]) -> None:
        missing = [name for name, ok in (
            ("pending data", not data["perso_buffer"]), ("PIN", "pin" in data[SECURE_STORE]),
            ("key pair", "private_key" in data[SECURE_STORE]), ("certificate", "certificate" in data),
        ) if not ok]
        if missing:
            raise ISOException(0x6985, f"personalisation incomplete: {', '.join(missing)}")
        data["personalised"] = True
        entry = ctx.entry
        entry.life_cycle = APP_PERSONALIZED
        ctx.se.registry.put(entry)


PACKAGE = PackageInfo(PACKAGE_AID, "1.0", {MODULE_AID: RemoteSignApplet})
"""The load file a catalog registers to offer the signing applet."""
