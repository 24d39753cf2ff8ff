"""Tables of the issuer host (:mod:`.issuer`), besides the shared ``cards`` and ``authorizations``.

* ``issuer_replies``: the response an issuer sent for a logged authorization, with a digest of the
  request, so that a duplicate transmission is answered with the very same bytes and a different
  message under the same key gets 94.
* ``issuer_card_state``: per card, whether the issuer has sent an APPLICATION BLOCK script that no
  APPLICATION UNBLOCK has undone yet (so a card found again gets its unblock script), and the
  day's approved amount for the daily limit.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base
from .models import AutoId

__all__ = ["IssuerCardState", "IssuerReply"]


class IssuerReply(Base):
    """The encoded response (switch dialect, length prefix excluded) to one logged authorization."""

    __tablename__ = "issuer_replies"

    authorization_id: Mapped[int] = mapped_column(AutoId, ForeignKey("authorizations.id"), primary_key=True,
                                                  autoincrement=False)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)


class IssuerCardState(Base):
    """Issuer-side state of a card that the shared ``cards`` table does not hold."""

    __tablename__ = "issuer_card_state"

    pan: Mapped[str] = mapped_column(String(19), ForeignKey("cards.pan"), primary_key=True)
    app_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    day: Mapped[str] = mapped_column(String(8), default="")
    day_total: Mapped[int] = mapped_column(BigInteger, default=0)
    scripts_sent: Mapped[int] = mapped_column(Integer, default=0)
