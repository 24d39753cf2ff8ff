"""Report integrity: a signed SHA-256 manifest of every artefact of a report directory.

Issue 6 "Integrity": ``MANIFEST.json`` lists every file under the report directory (relative POSIX
path, size, SHA-256), sorted by path; ``MANIFEST.sig`` is the Ed25519 signature (RFC 8032) of the
exact bytes of ``MANIFEST.json``, base64 on one line. The manifest names the signing key by its id
(first 16 hex digits of SHA-256 over the raw 32-byte public key) and says whether it is the bundled
TEST key. :func:`verify_manifest` names every file changed, added or removed, and whether the
signature holds.

Keys: PEM files (PKCS#8 private, SubjectPublicKeyInfo public). Defaults are the bundled TEST key
pair in ``fixtures/keys/``; ``PAYLAB_REPORT_SIGNING_KEY`` / ``PAYLAB_REPORT_PUBLIC_KEY`` (or an
explicit argument) point elsewhere. A real lab must use its own key: the test key is published.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..protocol.errors import PaylabError

MANIFEST_NAME = "MANIFEST.json"
SIGNATURE_NAME = "MANIFEST.sig"
MANIFEST_FORMAT = "paylab-report-manifest/1"
KEYS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "keys"
TEST_SIGNING_KEY = KEYS_DIR / "lab-signing-TEST-KEY.pem"
TEST_PUBLIC_KEY = KEYS_DIR / "lab-signing-TEST-KEY.pub.pem"
SIGNING_KEY_ENV = "PAYLAB_REPORT_SIGNING_KEY"
PUBLIC_KEY_ENV = "PAYLAB_REPORT_PUBLIC_KEY"
_CHUNK = 1 << 20


class IntegrityError(PaylabError):
    """The manifest cannot be written or read at all (missing, not JSON, key file unusable)."""


@dataclass
class VerifyResult:
    """Outcome of :func:`verify_manifest`; ``ok`` only with a good signature and no difference."""

    ok: bool
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bad_signature: bool = False
    key_id: str = ""

    def problems(self) -> list[str]:
        """One line per problem: ``changed: FILE``, ``added: FILE``, ``removed: FILE``, ``bad signature``."""
        lines = [f"bad signature: {SIGNATURE_NAME} does not verify {MANIFEST_NAME} with key {self.key_id}"] \
            if self.bad_signature else []
        lines += [f"changed: {p}" for p in self.changed]
        lines += [f"added: {p}" for p in self.added]
        lines += [f"removed: {p}" for p in self.removed]
        return lines


# --- keys ---------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


def load_signing_key(source: Ed25519PrivateKey | Path | str | None = None) -> Ed25519PrivateKey:
    """The Ed25519 private key: given, from a PEM path, from ``$PAYLAB_REPORT_SIGNING_KEY``, or the TEST key."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    path = Path(source or os.environ.get(SIGNING_KEY_ENV) or TEST_SIGNING_KEY)
    try:
        key = serialization.load_pem_private_key(_read_pem(path, "signing key"), password=None)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"signing key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IntegrityError(f"signing key {path}: not an Ed25519 key")
    return key


def load_public_key(source: Ed25519PublicKey | Path | str | None = None) -> Ed25519PublicKey:
    """The Ed25519 public key: given, from a PEM path, from ``$PAYLAB_REPORT_PUBLIC_KEY``, or the TEST key's."""
    if isinstance(source, Ed25519PublicKey):
        return source
    path = Path(source or os.environ.get(PUBLIC_KEY_ENV) or TEST_PUBLIC_KEY)
    try:
        key = serialization.load_pem_public_key(_read_pem(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"public key {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError(f"public key {path}: not an Ed25519 key")
    return key


def _test_key_id() -> str:
    try:
        return key_id(load_public_key(TEST_PUBLIC_KEY))
    except IntegrityError:
        return ""


# --- hashing ------------------------------------------------------------------------------------


def _digest(path: Path) -> tuple[str, int]:
    if path.is_symlink():  # never follow a link out of the report: hash where it points
        target = os.readlink(path).encode()
        return hashlib.sha256(b"symlink:" + target).hexdigest(), len(target)
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_tree(report_dir: Path) -> dict[str, dict[str, Any]]:
    """``{relative posix path: {"sha256", "size"}}`` of every file under ``report_dir`` except the manifest."""
    out: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(report_dir, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        names = list(filenames) + [d for d in dirnames if (base / d).is_symlink()]
        for name in names:
            path = base / name
            rel = path.relative_to(report_dir).as_posix()
            if rel in (MANIFEST_NAME, SIGNATURE_NAME):
                continue
            digest, size = _digest(path)
            out[rel] = {"sha256": digest, "size": size}
    return dict(sorted(out.items()))


# --- manifest -----------------------------------------------------------------------------------


def write_manifest(report_dir: Path | str, signing_key: Ed25519PrivateKey | Path | str | None = None) -> Path:
    """Hash every artefact under ``report_dir``, write ``MANIFEST.json`` and sign it (``MANIFEST.sig``).

    Returns the manifest path. Re-running replaces both files (e.g. after ``paylab report render``).
    """
    root = Path(report_dir)
    if not root.is_dir():
        raise IntegrityError(f"report directory {root}: not a directory")
    key = load_signing_key(signing_key)
    kid = key_id(key.public_key())
    files = hash_tree(root)
    manifest = {
        "format": MANIFEST_FORMAT,
        "hash": "sha256",
        "signature": "ed25519",
        "key_id": kid,
        "test_key": kid == _test_key_id(),
        "files": [{"path": p, **v} for p, v in files.items()],
    }
    body = (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode()
    manifest_path = root / MANIFEST_NAME
    manifest_path.write_bytes(body)
    (root / SIGNATURE_NAME).write_text(base64.b64encode(key.sign(body)).decode() + "\n", encoding="ascii")
    return manifest_path


def _read_manifest(root: Path) -> tuple[bytes, dict[str, Any], bytes]:
    manifest_path, sig_path = root / MANIFEST_NAME, root / SIGNATURE_NAME
    try:
        body = manifest_path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{manifest_path}: cannot read: {exc.strerror or exc}") from None
    try:
        manifest = json.loads(body)
        entries = manifest["files"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "path" in e for e in entries):
            raise TypeError("files")
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{manifest_path}: not a paylab report manifest ({exc})") from None
    try:
        signature = base64.b64decode(sig_path.read_bytes().strip(), validate=True)
    except OSError:
        signature = b""  # a missing signature is a bad signature, reported with the differences
    except ValueError:
        signature = b""
    return body, manifest, signature


def verify_manifest(report_dir: Path | str, public_key: Ed25519PublicKey | Path | str | None = None) -> VerifyResult:
    """Check the signature of ``MANIFEST.json`` and every file against it.

    :class:`IntegrityError` when there is no readable manifest at all; otherwise a
    :class:`VerifyResult` naming changed, added and removed files (sorted) and a bad signature.
    """
    root = Path(report_dir)
    if not root.is_dir():
        raise IntegrityError(f"report directory {root}: not a directory")
    key = load_public_key(public_key)
    body, manifest, signature = _read_manifest(root)
    kid = key_id(key)
    try:
        key.verify(signature, body)
        bad_signature = manifest.get("key_id") != kid
    except InvalidSignature:
        bad_signature = True
    expected = {str(e["path"]): str(e.get("sha256", "")) for e in manifest["files"]}
    actual = hash_tree(root)
    changed = sorted(p for p in expected.keys() & actual.keys() if actual[p]["sha256"] != expected[p])
    added = sorted(actual.keys() - expected.keys())
    removed = sorted(expected.keys() - actual.keys())
    ok = not (bad_signature or changed or added or removed)
    return VerifyResult(ok, changed, added, removed, bad_signature, kid)
