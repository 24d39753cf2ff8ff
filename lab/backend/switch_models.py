"""Tables of the switch (:mod:`.switch`), besides its rows in the shared ``authorizations`` log.

* ``switch_routes``: for each authorization the switch logged, the acquiring institution (field 32),
  the issuer it was routed to, the transaction type (``purchase``, ``load``, ``inquiry``) and when it
  was reversed; the clearing files (:meth:`.switch.Switch.write_clearing_files`) are built from it.
"""

from __future__ import annotations

from sqlalchemy import Double, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base
from .models import AutoId

__all__ = ["SwitchRoute"]


class SwitchRoute(Base):
    """Routing and clearing data of one switch authorization."""

    __tablename__ = "switch_routes"
    __table_args__ = (Index("ix_switch_routes_day", "day"),)

    authorization_id: Mapped[int] = mapped_column(AutoId, ForeignKey("authorizations.id"), primary_key=True,
                                                  autoincrement=False)
    day: Mapped[str] = mapped_column(String(8))  # business date YYYYMMDD (local time of the switch)
    acquirer_id: Mapped[str] = mapped_column(String(11))
    issuer: Mapped[str | None] = mapped_column(String(32))
    txn_type: Mapped[str] = mapped_column(String(10))
    reversed_at: Mapped[float | None] = mapped_column(Double)
