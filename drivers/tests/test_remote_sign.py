"""The SE-mode remote-payment signing applet: perso, on-card key generation, PIN, signatures.

The card is fabricated with the real factory and security domain (GP TEST KEYS, never production
keys); an issuer TSM loads and installs the applet over SCP03 and personalises it with INSTALL
[for personalization] + STORE DATA through the ISD, as in the field.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from paylab.drivers.se.applets.remote_sign import MODULE_AID, PACKAGE, PACKAGE_AID, SECURE_STORE
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import MICROSD, SIM, FormFactor
from paylab.drivers.se.gp.content import build_load_file_data_block
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.registry import APP_PERSONALIZED
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.protocol import remote_payment as rp
from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu, transmit_with_chaining
from paylab.lab.protocol.crypto import sm2
from paylab.lab.protocol.crypto.primitives import sm3
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp
from paylab.lab.protocol.gp.keys import wrap_key_component

ISD_KEYS = StaticKeys.gp_default_test_keys()
SE_ID = bytes.fromhex("4750535345303031")  # the SE id the CA binds the certificate to
USER_ID = b"wallet-user-0001"
PIN = "4321"
CA_SM2_PRIVATE = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")  # test key
ORDER = ("898111148990001", "ORDER20240501001", 12345, 156, "20240501123000", bytes(range(16)))


def new_se(image: CardImage, form_factor: FormFactor = MICROSD) -> SecureElement:
    se = SecureElement(image, form_factor, default_catalog(), seed=7)
    se.power_on()
    return se


def new_card(path=None, form_factor: FormFactor = MICROSD) -> SecureElement:
    image = CardImage(path, durable=False)
    fabricate(image, form_factor)
    return new_se(image, form_factor)


class Terminal:
    """Sends APDUs and keeps every R-APDU, to check that no secret ever left the card."""

    def __init__(self, se: SecureElement) -> None:
        self.se = se
        self.responses: list[bytes] = []

    def _exchange(self, capdu: bytes) -> bytes:
        rapdu = self.se.transmit(capdu)
        self.responses.append(rapdu)
        return rapdu

    def raw(self, capdu: bytes) -> bytes:
        """One command, following 61xx with GET RESPONSE on T=0 cards."""
        return transmit_with_chaining(self._exchange, CommandApdu.decode(capdu)).encode()

    def send(self, capdu: bytes | str) -> tuple[bytes, int]:
        rapdu = self.raw(bytes.fromhex(capdu) if isinstance(capdu, str) else capdu)
        return rapdu[:-2], int.from_bytes(rapdu[-2:], "big")

    def select(self, aid: bytes) -> int:
        return self.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256).encode())[1]


class Tsm:
    """The issuer's TSM: SCP03 (level 33, so STORE DATA answers come back R-encrypted) to the ISD."""

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self.block = 0
        isd = term.se.registry.isd().aid
        assert term.select(isd) == 0x9000
        challenge = bytes(range(8))
        data, sw = term.send(Scp03Session.host_initialize_update(ISD_KEYS, challenge))
        assert sw == 0x9000
        self.session = Scp03Session.host_from_init_update_response(ISD_KEYS, challenge, data, 0x33)
        assert term.send(self.session.external_authenticate())[1] == 0x9000

    def send(self, cmd: CommandApdu) -> tuple[bytes, int]:
        plain = ResponseApdu.decode(self.session.unwrap_response(self.term.raw(self.session.wrap(cmd.encode()))))
        self.term.responses.append(plain.encode())  # scanned for secrets too, after R-decryption
        return plain.data, plain.sw

    def ok(self, cmd: CommandApdu) -> bytes:
        data, sw = self.send(cmd)
        assert sw == 0x9000, f"{cmd.hex()} -> {sw:04X}"
        return data

    def install_applet(self) -> None:
        block = build_load_file_data_block(PACKAGE)
        self.ok(gp.InstallForLoad(PACKAGE_AID, b"", gp.load_file_data_block_hash(block)).command())
        for cmd in gp.load_commands(gp.LoadFile(block, ()).encode(), 200):
            self.ok(cmd)
        self.ok(gp.InstallForInstall(PACKAGE_AID, MODULE_AID, MODULE_AID).command())

    def start_perso(self) -> None:
        self.ok(gp.InstallForPersonalization(MODULE_AID).command())

    def store(self, data: bytes, *, p1: int = 0x08, last: bool = False) -> tuple[bytes, int]:
        """One STORE DATA block (block numbers follow the SD's sequence)."""
        out, sw = self.send(CommandApdu(0x80, 0xE2, p1 | (0x80 if last else 0), self.block, data, 256))
        if sw == 0x9000:
            self.block = 0 if last else self.block + 1
        return out, sw

    def store_all(self, payload: bytes, *, fmt: str = "dgi", chunk: int = 200, last: bool = False) -> bytes:
        """``payload`` in STORE DATA blocks of ``chunk`` bytes; returns the concatenated response data."""
        pieces = [payload[i:i + chunk] for i in range(0, len(payload), chunk)]
        out = b""
        for i, piece in enumerate(pieces):
            data, sw = self.store(piece, p1=0x10 if fmt == "ber" else 0x08, last=last and i == len(pieces) - 1)
            assert sw == 0x9000, f"STORE DATA answered {sw:04X}"
            out += data
        return out

    def store_encrypted_pin(self, pin: str) -> None:
        """DGI 8010 DEK-encrypted (P1 b7b6 = 11), padded 80 00.. to the AES block (EMV CPS)."""
        value = wrap_key_component("aes", ISD_KEYS.dek, rp.pin_block(pin) + bytes.fromhex("8000000000000000"),
                                   bytes(16))
        assert self.store(gp.encode_dgi(0x8010, value), p1=0x68)[1] == 0x9000


def installed_card(path=None, form_factor: FormFactor = MICROSD) -> tuple[Terminal, Tsm]:
    term = Terminal(new_card(path, form_factor))
    tsm = Tsm(term)
    tsm.install_applet()
    return term, tsm


def sm2_compact_certificate(public: bytes) -> bytes:
    return rp.issue_compact_certificate("sm2", CA_SM2_PRIVATE, ca_reference="PAYLAB TEST CA", holder=SE_ID,
                                        public_key=rp.PublicKey.decode(public), effective="20240101",
                                        expiry="20341231")


def personalise_sm2(tsm: Tsm) -> bytes:
    """Perso in DGI format with a DEK-encrypted PIN; returns the card's public key template."""
    tsm.start_perso()
    tsm.store_encrypted_pin(PIN)
    public = tsm.store_all(rp.encode_perso([
        ("algorithm", b"\x01"), ("user_id", USER_ID), ("pin_try_limit", b"\x03\x03"), ("generate_key_pair", b""),
    ]))
    tsm.store_all(rp.encode_perso([("certificate", sm2_compact_certificate(public))]), chunk=50, last=True)
    return public


@pytest.fixture(scope="module")
def rsa_ca() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def x509_certificate(ca: rsa.RSAPrivateKey, public: rp.PublicKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paylab test CA")])
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, SE_ID.hex().upper())])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(name).public_key(public.rsa_key())
            .serial_number(0x1001).not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(2034, 1, 1, tzinfo=datetime.UTC)).sign(ca, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def personalise_rsa(tsm: Tsm, ca: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    """Perso in BER format with an X.509 certificate; returns (public key template, certificate)."""
    tsm.start_perso()
    public = tsm.store_all(rp.encode_perso([
        ("algorithm", b"\x02"), ("pin", rp.pin_block(PIN)), ("generate_key_pair", b""),
    ], "ber"), fmt="ber")
    cert = x509_certificate(ca, rp.PublicKey.decode(public))
    assert len(cert) > 255  # needs several STORE DATA blocks and several GET CERTIFICATE chunks
    tsm.store_all(rp.encode_perso([("certificate", cert)], "ber"), fmt="ber", chunk=100, last=True)
    return public, cert


def secrets_of(se: SecureElement) -> list[bytes]:
    """The private key material and PIN block as they sit in the secure store."""
    store = se.applet_data(MODULE_AID)[SECURE_STORE]
    found = [value for value in (store.get("pin"), store["private_key"]) if value]
    if len(store["private_key"]) != 32:
        numbers = serialization.load_der_private_key(store["private_key"], None).private_numbers()
        found += [n.to_bytes(128 if n.bit_length() <= 1024 else 256, "big") for n in (numbers.d, numbers.p, numbers.q)]
    return found


def assert_no_secret_left(term: Terminal) -> None:
    everything = b"|".join(term.responses)
    for secret in secrets_of(term.se):
        assert secret not in everything
        assert secret[:16] not in everything  # not even a part of it
    assert term.se.faults == []


# --- order digest and server-side checks (pure) ----------------------------------------------------


def test_order_digest_is_sm3_of_the_length_prefixed_fields():
    expected = (b"\x0f898111148990001" + b"\x10ORDER20240501001" + b"\x06" + bytes.fromhex("000000012345")
                + b"\x02\x01\x56" + b"\x07" + bytes.fromhex("20240501123000") + b"\x10" + bytes(range(16)))
    assert rp.encode_order(*ORDER) == expected
    assert rp.order_digest(*ORDER) == sm3(expected)
    # the length prefixes keep the field boundaries: moving a character between fields changes the digest
    assert rp.order_digest("8981111489900011", "RDER20240501001", *ORDER[2:]) != rp.order_digest(*ORDER)


@pytest.mark.parametrize(("index", "value"), [
    (0, ""), (0, "é"), (1, "x" * 65), (2, -1), (2, 10**12), (3, "15a"), (4, "2024050112300"), (5, b"short"),
])
def test_order_digest_rejects_bad_fields(index, value):
    fields = list(ORDER)
    fields[index] = value
    with pytest.raises(rp.RemotePaymentError):
        rp.order_digest(*fields)


def test_public_key_template_and_certificate_round_trip():
    private = rp.generate_sm2_private(bytes(range(32)))
    key = rp.public_key_of("sm2", private)
    assert rp.PublicKey.decode(key.encode()) == key
    cert = sm2_compact_certificate(key.encode())
    ca = rp.PublicKey.sm2(sm2.public_from_private(CA_SM2_PRIVATE))
    assert rp.certificate_public_key(cert) == key
    assert rp.verify_compact_certificate(cert, ca, holder=SE_ID, on_date="20250101")
    assert not rp.verify_compact_certificate(cert, ca, holder=b"other SE")
    assert not rp.verify_compact_certificate(cert, ca, on_date="20350101")
    later = cert.replace(bytes.fromhex("5F250420240101"), bytes.fromhex("5F250420240102"))
    assert later != cert
    assert not rp.verify_compact_certificate(later, ca)  # the CA signature covers the body
    assert not rp.verify_compact_certificate(cert[:-1] + bytes((cert[-1] ^ 1,)), ca)
    with pytest.raises(rp.RemotePaymentError):
        rp.PublicKey.decode(b"\x7f\x49\x03\x80\x01\x03")


def test_sm2_key_in_an_x509_certificate_is_found_by_the_der_walk():
    point = rp.public_key_of("sm2", rp.generate_sm2_private(bytes(32))).point
    t = tlv.tlv
    spki = t(0x30, t(0x30, t(0x06, bytes.fromhex("2A8648CE3D0201")) + t(0x06, bytes.fromhex("2A811CCF5501822D")))
             + t(0x03, b"\x00" + point))
    name = t(0x30, t(0x31, t(0x30, t(0x06, b"\x55\x04\x03") + t(0x0C, b"x"))))
    tbs = t(0x30, t(0xA0, t(0x02, b"\x02")) + t(0x02, b"\x01") + t(0x30, t(0x06, b"\x2a\x81\x1c\xcf\x55\x01\x83\x75"))
            + name + t(0x30, t(0x17, b"240101000000Z") + t(0x17, b"340101000000Z")) + name + spki)
    cert = t(0x30, tbs + t(0x30, t(0x06, b"\x2a\x81\x1c\xcf\x55\x01\x83\x75")) + t(0x03, b"\x00" + bytes(70)))
    assert rp.certificate_public_key(cert) == rp.PublicKey.sm2(point)
    with pytest.raises(rp.RemotePaymentError):
        rp.certificate_public_key(b"\x30\x03\x02\x01\x00")


# --- the applet ------------------------------------------------------------------------------------


def test_sm2_perso_keygen_on_card_and_signature():
    term, tsm = installed_card()
    public = personalise_sm2(tsm)
    assert rp.PublicKey.decode(public).algorithm == "sm2"
    entry = term.se.registry.get(MODULE_AID)
    assert entry is not None
    assert entry.life_cycle == APP_PERSONALIZED

    assert term.select(MODULE_AID) == 0x9000
    assert rp.read_object(term.raw, rp.INS_GET_PUBLIC_KEY) == public
    cert = rp.read_object(term.raw, rp.INS_GET_CERTIFICATE)
    ca = rp.PublicKey.sm2(sm2.public_from_private(CA_SM2_PRIVATE))
    assert rp.verify_compact_certificate(cert, ca, holder=SE_ID, on_date="20240501")

    digest = rp.order_digest(*ORDER)
    assert term.send(rp.sign_order_command(digest))[1] == 0x6982  # no PIN yet
    assert term.send(rp.verify_pin_command(PIN))[1] == 0x9000
    signature, sw = term.send(rp.sign_order_command(digest))
    assert sw == 0x9000
    assert len(signature) == 64
    server_key = rp.certificate_public_key(cert)
    assert rp.verify_order_signature(server_key, digest, signature, "sm2", USER_ID)
    assert not rp.verify_order_signature(server_key, digest, signature, "sm2")  # Z_A binds the user ID
    assert not rp.verify_order_signature(server_key, rp.order_digest(*ORDER[:5], bytes(16)), signature, "sm2",
                                         USER_ID)
    # the PIN stays verified for the session, not beyond it
    assert term.send(rp.sign_order_command(digest))[1] == 0x9000
    term.se.reset()
    assert term.select(MODULE_AID) == 0x9000
    assert term.send(rp.sign_order_command(digest))[1] == 0x6982
    assert_no_secret_left(term)


def test_rsa_perso_with_x509_certificate_and_signature(rsa_ca):
    term, tsm = installed_card()
    public, cert = personalise_rsa(tsm, rsa_ca)
    assert term.select(MODULE_AID) == 0x9000
    assert rp.read_object(term.raw, rp.INS_GET_PUBLIC_KEY) == public
    assert rp.read_object(term.raw, rp.INS_GET_CERTIFICATE) == cert
    loaded = x509.load_der_x509_certificate(cert)
    rsa_ca.public_key().verify(loaded.signature, loaded.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())

    digest = rp.order_digest(*ORDER)
    assert term.send(rp.verify_pin_command(PIN))[1] == 0x9000
    signature, sw = term.send(rp.sign_order_command(digest))
    assert sw == 0x9000
    assert len(signature) == 256
    assert rp.verify_order_signature(loaded.public_key(), digest, signature, "rsa2048")
    assert rp.verify_order_signature(public, digest, signature, "rsa2048")
    assert not rp.verify_order_signature(public, bytes(32), signature, "rsa2048")
    with pytest.raises(rp.RemotePaymentError):
        rp.verify_order_signature(public, digest, signature, "sm2")
    assert_no_secret_left(term)


def test_pin_tries_are_counted_blocked_and_persisted(tmp_path):
    path = tmp_path / "card.json"
    term, tsm = installed_card(path)
    personalise_sm2(tsm)
    assert term.select(MODULE_AID) == 0x9000
    assert term.send(rp.verify_pin_command(None))[1] == 0x63C3
    assert term.send(rp.verify_pin_command("0000"))[1] == 0x63C2
    assert term.send(rp.verify_pin_command("1111"))[1] == 0x63C1
    assert term.send(rp.verify_pin_command(PIN))[1] == 0x9000  # right PIN resets the counter
    assert term.send(rp.verify_pin_command(None))[1] == 0x9000  # verified in this session
    assert term.send(rp.verify_pin_command("0000"))[1] == 0x63C2  # a wrong PIN also ends the verified state
    assert term.send(rp.sign_order_command(bytes(32)))[1] == 0x6982

    # the try counter is persistent: it survives a power cycle (a new runtime over the same image file)
    term.se.power_off()
    term = Terminal(new_se(CardImage(path, durable=False)))
    assert term.select(MODULE_AID) == 0x9000
    assert term.send(rp.verify_pin_command(None))[1] == 0x63C2
    assert term.send(rp.verify_pin_command("0000"))[1] == 0x63C1
    assert term.send(rp.verify_pin_command("0000"))[1] == 0x63C0
    assert term.send(rp.verify_pin_command(PIN))[1] == 0x6983  # blocked, even for the right PIN
    assert term.send(rp.verify_pin_command(None))[1] == 0x6983
    assert term.send(rp.sign_order_command(bytes(32)))[1] == 0x6983


def test_malformed_pin_blocks_do_not_cost_a_try():
    term, tsm = installed_card()
    personalise_sm2(tsm)
    assert term.select(MODULE_AID) == 0x9000
    for bad in ("1234", "24123FFFFFFFFFFF", "2412345FFFFFFFFF", "3412345FFFFFFFFF"):
        assert term.send(CommandApdu(0x00, 0x20, 0x00, 0x81, bytes.fromhex(bad)).encode())[1] == 0x6A80
    assert term.send("0020008208" + rp.pin_block(PIN).hex())[1] == 0x6A88
    assert term.send("8020008108" + rp.pin_block(PIN).hex())[1] == 0x6E00
    assert term.send(rp.verify_pin_command(None))[1] == 0x63C3


def test_state_survives_a_power_cycle_and_signs_after_it(tmp_path):
    path = tmp_path / "card.json"
    term, tsm = installed_card(path)
    public = personalise_sm2(tsm)
    term.se.power_off()
    term = Terminal(new_se(CardImage(path, durable=False)))
    assert term.select(MODULE_AID) == 0x9000
    assert term.send(rp.verify_pin_command(PIN))[1] == 0x9000
    digest = rp.order_digest(*ORDER)
    signature, sw = term.send(rp.sign_order_command(digest))
    assert sw == 0x9000
    assert rp.verify_order_signature(public, digest, signature, "sm2", USER_ID)


def test_perso_rules_on_a_t0_sim():
    term, tsm = installed_card(form_factor=SIM)
    assert term.select(MODULE_AID) == 0x9000
    assert term.send(rp.sign_order_command(bytes(32)))[1] == 0x6985  # not personalised
    assert term.send(rp.read_command(rp.INS_GET_PUBLIC_KEY))[1] == 0x6A88
    tsm = Tsm(term)
    tsm.start_perso()
    # a certificate before the key pair, an unknown element, application-dependent encryption: refused
    assert tsm.store(rp.encode_perso([("certificate", b"\x7f\x21\x00")]))[1] == 0x6985
    assert tsm.store(bytes.fromhex("01990100"))[1] == 0x6A80
    assert tsm.store(bytes.fromhex("801000"), p1=0x28)[1] == 0x6A80
    public = tsm.store_all(rp.encode_perso([("generate_key_pair", b"")]))
    # a certificate made for another key is refused
    other = rp.public_key_of("sm2", rp.generate_sm2_private(bytes(range(32)))).encode()
    assert tsm.store(rp.encode_perso([("certificate", sm2_compact_certificate(other))]), last=True)[1] == 0x6A80
    # the last block without a PIN does not complete the perso (and changes nothing)
    good = rp.encode_perso([("certificate", sm2_compact_certificate(public))])
    assert tsm.store(good, last=True)[1] == 0x6985
    assert tsm.store(rp.encode_perso([("pin", rp.pin_block(PIN))]) + good, last=True)[1] == 0x9000
    assert term.select(MODULE_AID) == 0x9000
    # GENERATE KEY PAIR and further perso are over once personalised
    assert term.send(rp.generate_key_pair_command())[1] == 0x6985
    tsm = Tsm(term)
    tsm.start_perso()
    assert tsm.store(rp.encode_perso([("pin", rp.pin_block("9999"))]), last=True)[1] == 0x6985
    assert term.se.faults == []


def test_generate_key_pair_command_during_perso_replaces_the_key():
    term, _ = installed_card()
    assert term.select(MODULE_AID) == 0x9000
    first, sw = term.send(rp.generate_key_pair_command())
    assert sw == 0x9000
    second, sw = term.send(rp.generate_key_pair_command())
    assert sw == 0x9000
    assert first != second
    assert rp.read_object(term.raw, rp.INS_GET_PUBLIC_KEY) == second
    assert term.send("80460000")[1] == 0x9000
    assert term.send("80460100")[1] == 0x6A86
    assert term.send("00460000")[1] == 0x6E00
    assert term.send("80EE0000")[1] == 0x6D00
    assert_no_secret_left(term)


def read_chunks(transmit: Callable[[bytes], bytes], ins: int, le: int) -> list[int]:
    sws, offset = [], 0
    while True:
        rapdu = transmit(bytes((0x80, ins)) + offset.to_bytes(2, "big") + bytes((le,)))
        sws.append(int.from_bytes(rapdu[-2:], "big"))
        offset += len(rapdu) - 2
        if sws[-1] != rp.SW_MORE_DATA:
            return sws


def test_objects_are_read_in_chunks_with_6310():
    term, tsm = installed_card()
    public = personalise_sm2(tsm)
    assert term.select(MODULE_AID) == 0x9000
    sws = read_chunks(term.raw, rp.INS_GET_PUBLIC_KEY, 16)
    assert sws == [0x6310] * (len(public) // 16) + [0x9000]
    assert term.send(rp.read_command(rp.INS_GET_PUBLIC_KEY, len(public)))[1] == 0x6B00


def test_the_default_catalog_offers_the_applet():
    assert default_catalog().package(PACKAGE_AID) is PACKAGE
