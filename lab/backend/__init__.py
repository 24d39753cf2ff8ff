"""paylab's bundled reference backend: issuer, acquirer and switch over ISO 8583; TSMs and the MTPS
hub; OTA gateway; remote payment system with the merchant platform; SMS gateway.

Runs embedded (in-process on loopback ports; the default for tests and the demo) or as processes
(``paylab backend serve``). In a real lab any service can be replaced by the system under test by
pointing the rig inventory at another address.

Layout (one module, one job):

============================ ==================================================================
module                       what
============================ ==================================================================
``config``                   one YAML file with documented defaults -> :class:`BackendConfig`
``context``                  :class:`BackendContext`: config + engine + ledger + clock + rng,
                             handed to every service
``db`` / ``models``          SQLAlchemy engine (SQLite WAL by default, PostgreSQL by URL), tables
``ledger``                   double-entry ledger: balanced entries in one DB transaction,
                             idempotent by entry id, invariant check
``pgserver``                 a private PostgreSQL server for tests (initdb/pg_ctl, stopped by PID)
``iso_tcp``                  asyncio TCP server/client plumbing with the protocol core's framing
``issuer``                   issuer host: accounts, ARQC/ARPC, scripts, ATC replay, limits
``switch``                   switch: BIN routing, issuer timeout -> 91 + reversal, clearing file
``acquirer``                 acquirer host (UnionPay POS dialect): sign-on keys, MAC, 0200/0400/0500
``remote_payment``, ``sms``, remote payment system (SE and non-SE modes), merchant content
``merchant``                 platform, SMS gateway (FastAPI routers)
``tsm/``                     SP-TSMs, SEI-TSMs, UnionPay TSM, MTPS hub, institution API auth
``ota_gateway``              SMSC simulation (SCP80 in SMS-DELIVER) and HTTP remote administration
``runner``                   start/stop everything embedded; ``paylab backend serve``; /health
============================ ==================================================================

Money convention (``ledger``): amounts are integers in fen (currency 156); every entry is a list of
``(account_id, amount)`` lines summing to zero, debits positive, credits negative.
"""
