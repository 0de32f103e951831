"""Rules of deposits and webhooks that need no database: references, event keys, Paystack's timestamps."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest

from app.config import Settings
from app.db.models import DepositStatus, ReviewKind
from app.domain.payments.deposit_states import TRANSITIONS, DepositEvent, Transition
from app.domain.payments.deposits import check_deposit_amount, new_deposit_reference
from app.domain.payments.inbox import event_key
from app.domain.payments.paystack import parse_paystack_time
from app.lib.errors import RequestValidationError

PAYSTACK_REFERENCE = re.compile(r"^[A-Za-z0-9.=-]+$")


def test_deposit_references_use_only_characters_paystack_accepts_and_are_unique() -> None:
    references = {new_deposit_reference() for _ in range(1000)}
    assert len(references) == 1000
    assert all(PAYSTACK_REFERENCE.fullmatch(reference) for reference in references)
    assert all(len(reference) <= 64 for reference in references)


def test_a_redelivery_has_the_same_event_key_and_any_other_body_another() -> None:
    body = b'{"event":"charge.success","data":{"reference":"dep-1","amount":5000}}'
    assert event_key(body) == event_key(bytes(body)) == hashlib.sha256(body).hexdigest()
    assert event_key(body) != event_key(body.replace(b"5000", b"5001"))
    assert event_key(body) != event_key(body + b" ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2016-09-30T21:10:19.000Z", datetime(2016, 9, 30, 21, 10, 19, tzinfo=UTC)),
        ("2026-01-01T12:00:00+01:00", datetime(2026, 1, 1, 11, 0, tzinfo=UTC)),
        ("2026-01-01T12:00:00", datetime(2026, 1, 1, 12, 0, tzinfo=UTC)),
        ("not a time", None),
        ("", None),
        (None, None),
        (1475269819, None),
    ],
)
def test_paystack_timestamps_are_read_as_utc_or_ignored(value: object, expected: datetime | None) -> None:
    assert parse_paystack_time(value) == expected


def test_deposit_amounts_outside_the_configured_bounds_are_validation_errors() -> None:
    money = Settings().replaced(deposit_min_amount=100, deposit_max_amount=1_000_000).money
    check_deposit_amount(100, money)
    check_deposit_amount(1_000_000, money)
    with pytest.raises(RequestValidationError, match="at least 100 kobo"):
        check_deposit_amount(99, money)
    with pytest.raises(RequestValidationError, match="at most 1000000 kobo"):
        check_deposit_amount(1_000_001, money)


def test_only_a_payment_of_the_initialised_amount_ever_credits_and_never_from_success_or_reversed() -> None:
    crediting = {pair for pair, transition in TRANSITIONS.items() if transition.credit}
    assert crediting == {
        (DepositStatus.PENDING, DepositEvent.PAID),
        (DepositStatus.FAILED, DepositEvent.PAID),
        (DepositStatus.ABANDONED, DepositEvent.PAID),
    }
    assert all(
        transition.status is DepositStatus.SUCCESS for pair, transition in TRANSITIONS.items() if transition.credit
    )


def test_a_success_deposit_moves_only_to_refunded_crediting_nothing_and_a_success_after_a_reversal_is_held() -> None:
    assert {pair: t for pair, t in TRANSITIONS.items() if pair[0] is DepositStatus.SUCCESS} == {
        (DepositStatus.SUCCESS, DepositEvent.REFUNDED_IN_FULL): Transition(DepositStatus.REFUNDED)
    }
    assert not [pair for pair in TRANSITIONS if pair[0] is DepositStatus.REFUNDED]
    assert TRANSITIONS[DepositStatus.REVERSED, DepositEvent.PAID] == Transition(
        DepositStatus.REVERSED, review=ReviewKind.SUCCESS_AFTER_REVERSAL
    )


@pytest.mark.parametrize("status", list(DepositStatus))
def test_another_amount_or_currency_credits_nothing_from_any_state(status: DepositStatus) -> None:
    transition = TRANSITIONS.get((status, DepositEvent.PAID_OTHER_AMOUNT))
    assert transition is None or (transition.credit is False and transition.status is status)


def test_only_a_pending_deposit_can_fail_be_reversed_or_abandoned() -> None:
    ending = {DepositEvent.DECLINED, DepositEvent.REVERSED, DepositEvent.ABANDONED, DepositEvent.UNKNOWN_TO_PAYSTACK}
    assert {status for (status, event) in TRANSITIONS if event in ending} == {DepositStatus.PENDING}
