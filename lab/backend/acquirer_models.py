"""Tables of the acquirer host (:mod:`.acquirer`), besides the shared ``terminals`` and ``authorizations``.

* ``acquirer_replies``: the response sent to a terminal for a logged authorization (encoded in the POS
  dialect *without* field 64, which is recomputed with the terminal's current MAK when replayed) and
  a digest of the request: an identical retransmission gets the same answer again, a different
  message with the same STAN in the batch gets 94.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base
from .models import AutoId

__all__ = ["AcquirerReply"]


class AcquirerReply(Base):
    """The response (POS dialect, no MAC, no length prefix) to one logged terminal request."""

    __tablename__ = "acquirer_replies"

    authorization_id: Mapped[int] = mapped_column(AutoId, ForeignKey("authorizations.id"), primary_key=True,
                                                  autoincrement=False)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
