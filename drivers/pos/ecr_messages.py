"""What the ECR driver and the POS simulator agree on above :mod:`paylab.lab.protocol.ecr`'s tag table.

* I1 (identify): ``terminal_id`` (0B), ``merchant_id`` (0C) and one ``text`` (0D) field per
  ``key=value`` item: ``model``, ``serial``, ``firmware``, ``status`` (this lab's convention [M]).
* Responses -> :class:`~paylab.drivers.protocols.pos.PosResult` (:func:`result_from_message`).
* Tag ``10`` (this lab's extension, ans6 [M]): the ISO 8583 STAN (field 11) of the host transaction;
  unknown to the protocol core, so it travels as a raw field (newer peers interoperate).
* POS-local result codes (the ECR module's table): ``C1`` cancelled, ``T1`` card timeout, ``E1`` POS
  error, ``NF`` nothing found; ``XX`` is this lab's answer to an unknown request type [M].
"""

from __future__ import annotations

from paylab.drivers.protocols.pos import PosIdentity, PosResult
from paylab.lab.protocol import ecr

TAG_STAN = 0x10

RESULT_APPROVED = "00"
RESULT_CANCELLED = "C1"
RESULT_CARD_TIMEOUT = "T1"
RESULT_POS_ERROR = "E1"
RESULT_NOT_FOUND = "NF"
RESULT_UNSUPPORTED = "XX"

REQUEST_NAMES = {
    ecr.SALE: "sale", ecr.VOID: "void", ecr.REFUND: "refund", ecr.QUERY_LAST: "query",
    ecr.CANCEL: "cancel", ecr.IDENTIFY: "identify",
}
IDENTITY_KEYS = ("model", "serial", "firmware", "status")


def identity_message(identity: PosIdentity, *, trace: int | None) -> ecr.EcrMessage:
    """The I1 answering an I0 with ``trace``."""
    text = [f"{key}={getattr(identity, key)}" for key in IDENTITY_KEYS]
    fields = [(ecr.TAG_TEXT, line.encode("utf-8")) for line in text]
    return ecr.EcrMessage.build(ecr.IDENTIFY_RESPONSE, trace=trace, result=RESULT_APPROVED,
                                terminal_id=identity.terminal_id, merchant_id=identity.merchant_id, extra=fields)


def identity_from_message(message: ecr.EcrMessage) -> PosIdentity:
    """A :class:`PosIdentity` from an I1 (missing items become ``"unknown"``)."""
    items: dict[str, str] = {}
    for line in message.get_all("text"):
        key, sep, value = str(line).partition("=")
        if sep:
            items[key.strip()] = value.strip()
    tid = message.get("terminal_id")
    mid = message.get("merchant_id")
    return PosIdentity(model=items.get("model", "unknown"), serial=items.get("serial", "unknown"),
                       firmware=items.get("firmware", "unknown"),
                       terminal_id=str(tid) if tid is not None else None,
                       merchant_id=str(mid) if mid is not None else None, status=items.get("status", "unknown"))


def _opt_str(message: ecr.EcrMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


def result_from_message(request: str, message: ecr.EcrMessage, **raw: object) -> PosResult:
    """A :class:`PosResult` of ``request`` ("sale", ...) from its response (or a Q1)."""
    details: dict[str, object] = {"type": message.type}
    for name in ("terminal_id", "merchant_id", "timestamp", "original_type", "original_trace"):
        value = message.get(name)
        if value is not None:
            details[name] = value
    text = [str(line) for line in message.get_all("text")]
    if text:
        details["text"] = text
    details.update(raw)
    stan = message.raw(TAG_STAN)
    return PosResult(
        request=request, result=message.result or "", trace=message.trace, amount=message.amount,
        currency=message.currency, reference=_opt_str(message, "rrn"), auth_code=_opt_str(message, "auth_code"),
        pan=_opt_str(message, "pan_masked"), ecr_ref=_opt_str(message, "ecr_ref"), receipt=message.receipt,
        stan=stan.decode("ascii", "replace") if stan else None,
        raw=details,
    )
