"""The card image: the whole persistent state of one emulated card, with atomic journaled commits.

Like Java Card's transaction mechanism, every commit is all-or-nothing across a power loss at any
byte. The state is a JSON-able tree (dicts, lists, str, int, bool, None, and ``bytes``, stored as
``{"$b": hex}``). A commit (one per state-changing APDU) runs:

1. write the **journal** ``<image>.journal``: magic, payload length, SHA-256, payload (the new state);
2. fsync it — from here on the new state is decided;
3. write ``<image>.tmp`` and atomically rename it over the image;
4. delete the journal.

On load, a journal whose length and hash check out is rolled forward (the commit had been
decided); a torn journal is discarded (the old image stands). So after any tear the card is
exactly as before or exactly as after the command.

Tear injection: :attr:`CardImage.tear_hook` is consulted at each step; for the two file writes it
may name the byte offset at which power is cut, so tests can tear "at any byte".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CardImageError, PowerLost

IMAGE_VERSION = 1
JOURNAL_MAGIC = b"PAYLABJ1"

TearHook = Callable[[str, int], int | None]
"""``hook(point, size)``: return None to go on, or a byte offset 0..size to cut power there.

Points: ``commit.journal`` (size = journal bytes), ``commit.journal_synced`` (0),
``commit.image`` (size = image bytes), ``commit.renamed`` (0), ``commit.done`` (0). For size-0
points any integer return value cuts power.
"""


def _default(obj: object) -> object:
    if isinstance(obj, bytes | bytearray):
        return {"$b": bytes(obj).hex()}
    raise TypeError(f"card state holds a {type(obj).__name__}, which is not storable")


def _hook(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and "$b" in obj:
        return bytes.fromhex(obj["$b"])
    return obj


def dumps(state: dict[str, Any]) -> bytes:
    """Canonical serialisation of a card state (sorted keys, so equal states give equal bytes)."""
    return json.dumps(state, default=_default, sort_keys=True, separators=(",", ":")).encode()


def loads(raw: bytes) -> dict[str, Any]:
    """Inverse of :func:`dumps`."""
    return json.loads(raw, object_hook=_hook)


class CardImage:
    """Persistent state of one card, in a file (``path``) or in memory (``path=None``).

    ``state`` is the live tree the runtime and applets mutate during one APDU;
    :meth:`commit` makes it durable, :meth:`rollback` returns to the last committed state.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, durable: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.durable = durable
        self.tear_hook: TearHook | None = None
        self.commits = 0
        self._committed = b""
        self.state: dict[str, Any] = {}
        self.reload()

    # -- files ---------------------------------------------------------------------------------
    @property
    def journal_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".journal")

    @property
    def tmp_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".tmp")

    def exists(self) -> bool:
        """True if the image holds a card (a file on disk, or a non-empty in-memory state)."""
        return bool(self._committed) and self._committed != dumps({})

    def reload(self) -> None:
        """Recover (journal roll-forward or discard) and load the committed state from disk."""
        if self.path is None:
            self.state = loads(self._committed) if self._committed else {}
            return
        self._recover()
        if self.path.exists():
            raw = self.path.read_bytes()
            try:
                state = loads(raw)
            except ValueError as exc:
                raise CardImageError(f"{self.path}: not a card image ({exc})") from None
            if state and state.get("image_version") != IMAGE_VERSION:
                raise CardImageError(f"{self.path}: image version {state.get('image_version')!r}, "
                                     f"expected {IMAGE_VERSION}")
            self._committed = raw
            self.state = state
        else:
            self._committed = dumps({})
            self.state = {}

    def _recover(self) -> None:
        assert self.path is not None
        journal = self.journal_path
        if journal.exists():
            payload = _read_journal(journal.read_bytes())
            if payload is not None:
                self._write_atomically(payload, tear=False)
            journal.unlink()
            self._fsync_dir()
        if self.tmp_path.exists():
            self.tmp_path.unlink()

    # -- transactions ---------------------------------------------------------------------------
    def rollback(self) -> None:
        """Discard every change since the last commit."""
        self.state = loads(self._committed) if self._committed else {}

    @property
    def dirty(self) -> bool:
        """True when ``state`` differs from the committed state."""
        return dumps(self.state) != self._committed

    def commit(self) -> bool:
        """Make ``state`` durable atomically; returns False when nothing changed (no write)."""
        self.state["image_version"] = IMAGE_VERSION
        raw = dumps(self.state)
        if raw == self._committed:
            return False
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            journal = JOURNAL_MAGIC + len(raw).to_bytes(4, "big") + hashlib.sha256(raw).digest() + raw
            self._write_file(self.journal_path, journal, "commit.journal")
            self._tear("commit.journal_synced")
            self._write_atomically(raw, tear=True)
            self._tear("commit.renamed")
            self.journal_path.unlink()
            self._fsync_dir()
            self._tear("commit.done")
        self._committed = raw
        self.commits += 1
        return True

    def _tear(self, point: str, size: int = 0) -> int | None:
        if self.tear_hook is None:
            return None
        cut = self.tear_hook(point, size)
        if cut is not None and size == 0:
            raise PowerLost(point)
        return cut

    def _write_file(self, path: Path, data: bytes, point: str) -> None:
        cut = self._tear(point, len(data))
        with open(path, "wb") as fh:
            fh.write(data if cut is None else data[: max(0, min(cut, len(data)))])
            fh.flush()
            if self.durable:
                os.fsync(fh.fileno())
        if cut is not None:
            raise PowerLost(f"{point}@{cut}")

    def _write_atomically(self, raw: bytes, *, tear: bool) -> None:
        assert self.path is not None
        if tear:
            self._write_file(self.tmp_path, raw, "commit.image")
        else:
            with open(self.tmp_path, "wb") as fh:
                fh.write(raw)
                fh.flush()
                if self.durable:
                    os.fsync(fh.fileno())
        os.replace(self.tmp_path, self.path)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        if not self.durable or self.path is None:
            return
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_journal(raw: bytes) -> bytes | None:
    """The payload of a complete journal, or None for a torn one."""
    head = len(JOURNAL_MAGIC) + 4 + 32
    if len(raw) < head or not raw.startswith(JOURNAL_MAGIC):
        return None
    length = int.from_bytes(raw[8:12], "big")
    digest, payload = raw[12:44], raw[44:]
    if len(payload) != length or hashlib.sha256(payload).digest() != digest:
        return None
    return payload
