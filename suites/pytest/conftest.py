"""Fixtures shared by the payment suites: fresh enrolled cards, path tracing, the account-kind matrix.

``enrol(kind, **amounts)`` enrols a fresh card (:func:`paylab.fixtures.scenarios.cards.enrol_card`) and,
at teardown, checks the ledger's invariants (balanced entries, no account below its floor) and closes
the session's acquirer links at the end of the session. ``trace_path(path)`` hooks the drivers of a
payment path into the test's masked APDU trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def payment_links(lab: Any) -> Iterator[None]:
    """Closes the signed-on acquirer links the payment scenarios opened, before the rig stops."""
    from paylab.fixtures.scenarios.payments import close_links

    yield
    close_links(lab)


@pytest.fixture
def iso8583_messages(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """The masked ISO 8583 messages the lab-side terminal exchanges during the test (kept in the test's
    result line for the auditor report)."""
    from paylab.fixtures.scenarios.payments import add_iso8583_listener, remove_iso8583_listener

    messages: list[dict[str, Any]] = []
    request.node.user_properties.append(("iso8583", messages))
    add_iso8583_listener(messages.append)
    yield messages
    remove_iso8583_listener(messages.append)


@pytest.fixture
def enrol(lab: Any, payment_links: None, iso8583_messages: list[dict[str, Any]]) -> Iterator[Callable[..., Any]]:
    """``enrol(kind, balance=..., ecash=..., credit_limit=..., daily_limit=..., placement=...)`` → a fresh
    :class:`~paylab.fixtures.scenarios.cards.EnrolledCard`; ledger invariants are checked after the test,
    and the test's ISO 8583 messages are recorded."""
    from paylab.fixtures.scenarios.cards import enrol_card

    used: list[Any] = []

    def make(kind: str, **kwargs: Any) -> Any:
        card = enrol_card(lab, kind, **kwargs)
        used.append(card)
        return card

    yield make
    if used:
        lab.backend.ctx.ledger.check_invariants()


@pytest.fixture
def trace_path(lab: Any, trace_transport: Any) -> Callable[[str], None]:
    """``trace_path("pcsc" | "nfc" | "pos" | "contact")``: trace every driver the path uses."""
    from paylab.fixtures.scenarios.payments import path_drivers

    def hook(path: str) -> None:
        for driver in path_drivers(lab, path):
            trace_transport(driver)

    return hook
