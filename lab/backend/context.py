"""The :class:`BackendContext` every backend service is handed: configuration, database, ledger, clock
and randomness in one place, so services hold no globals and tests can inject time and randomness."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from .config import BackendConfig
from .db import create_all, make_engine, session_scope
from .ledger import Ledger
from .seed import seed_accounts

__all__ = ["BackendContext"]


@dataclass
class BackendContext:
    """Configuration + engine + ledger + clock (Unix seconds) + random source.

    ``rng`` defaults to :class:`secrets.SystemRandom` (auth codes, OTPs, keys); tests pass a seeded
    :class:`random.Random` for reproducible runs.
    """

    config: BackendConfig
    engine: Engine
    ledger: Ledger
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=secrets.SystemRandom)

    @classmethod
    def create(cls, config: BackendConfig, *, clock: Callable[[], float] | None = None,
               rng: random.Random | None = None) -> BackendContext:
        """Make the engine (creating the state and clearing dirs), create every table, seed the
        configuration's accounts, cards and terminals (idempotent)."""
        config.state_dir.mkdir(parents=True, exist_ok=True)
        config.clearing_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(config.database_url)
        try:
            create_all(engine)
            the_clock = clock or time.time
            ledger = Ledger(engine, clock=the_clock)
            seed_accounts(config, ledger)
        except BaseException:
            engine.dispose()
            raise
        return cls(config, engine, ledger, the_clock, rng if rng is not None else secrets.SystemRandom())

    def session(self, *, write: bool = True) -> AbstractContextManager[Session]:
        """A transaction-scoped session (:func:`.db.session_scope`)."""
        return session_scope(self.engine, write=write)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> BackendContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
