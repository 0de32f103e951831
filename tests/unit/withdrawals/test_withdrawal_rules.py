"""The withdrawal's transition table and the reading of Paystack's transfer objects, without a database."""

from __future__ import annotations

import itertools
import json

import pytest

from app.db.models import ReviewKind, WithdrawalStatus
from app.domain.payments.paystack import PaystackError, TransferStatus, transfer_report
from app.domain.withdrawals.withdrawal_states import (
    OTP_REASON,
    TRANSITIONS,
    Movement,
    WithdrawalEvent,
    event_of,
    reason_of,
)
from tests.support.paystack_standin import EVENTS_DIR

S, E = WithdrawalStatus, WithdrawalEvent
RETURNS = {Movement.RETURN, Movement.RETURN_AFTER_PAYOUT}


def _money_moved(events: tuple[WithdrawalEvent, ...]) -> tuple[WithdrawalStatus, int, int]:
    """The status a sequence of news leads to, and how many payouts and returns it made."""
    status, completed, returned = S.PENDING, 0, 0
    for event in events:
        transition = TRANSITIONS.get((status, event))
        if transition is None:
            continue
        completed += transition.movement is Movement.COMPLETE
        returned += transition.movement in RETURNS
        if transition.movement is Movement.RETURN_AFTER_PAYOUT:
            assert completed == 1, f"{events}: only what was paid out comes back from paystack"
        status = transition.status
    return status, completed, returned


def test_any_sequence_of_outcomes_pays_out_at_most_once_and_returns_at_most_once() -> None:
    for length in range(1, 6):
        for events in itertools.product(list(E), repeat=length):
            status, completed, returned = _money_moved(events)
            assert completed <= 1, events
            assert returned <= 1, events
            # The money is gone exactly when the status says it left, and back exactly when it says so.
            assert (completed == 1 and returned == 0) == (status is S.SUCCESS), events
            assert (returned == 1) == (status in {S.FAILED, S.REVERSED}), events


def test_an_outcome_contradicting_the_applied_one_moves_nothing_and_is_flagged() -> None:
    for status, event in [(S.SUCCESS, E.FAILED), (S.FAILED, E.PAID), (S.REVERSED, E.FAILED), (S.REVERSED, E.PAID)]:
        transition = TRANSITIONS[(status, event)]
        assert (transition.status, transition.movement) == (status, None)
        assert transition.review is ReviewKind.PAYOUT_CONTRADICTION


def test_repeated_news_is_not_in_the_table() -> None:
    for status, event in [(S.SUCCESS, E.PAID), (S.FAILED, E.FAILED), (S.REVERSED, E.REVERSED)]:
        assert (status, event) not in TRANSITIONS
    for status in (S.PROCESSING, S.SUCCESS, S.FAILED, S.REVERSED):
        assert (status, E.ACCEPTED) not in TRANSITIONS, "an acceptance never undoes an outcome"


def _report(status: str, **data: object):  # type: ignore[no-untyped-def]
    return transfer_report({"reference": "wd-1", "amount": 500, "currency": "ngn", "status": status, **data}, "test")


@pytest.mark.parametrize("status", list(TransferStatus))
def test_every_paystack_transfer_status_means_an_event(status: TransferStatus) -> None:
    assert event_of(_report(status.value)) is not None


def test_a_status_paystack_adds_later_is_no_news() -> None:
    assert event_of(_report("some_new_status")) is None


def test_otp_fails_the_withdrawal_with_the_reason_to_disable_transfer_otp() -> None:
    report = _report("otp")
    assert event_of(report) is E.FAILED
    assert reason_of(report, E.FAILED) == OTP_REASON
    assert "disable" in OTP_REASON
    assert "transfer OTP" in OTP_REASON


def test_a_transfer_object_is_read_with_its_reason_and_an_upper_case_currency() -> None:
    report = _report("failed", gateway_response="Account closed", transfer_code="TRF_1")
    assert (report.amount, report.currency, report.reason, report.transfer_code) == (
        500,
        "NGN",
        "Account closed",
        "TRF_1",
    )
    with pytest.raises(ValueError, match="amount"):
        transfer_report({"reference": "wd-1", "amount": "500", "currency": "NGN"}, "test")


@pytest.mark.parametrize("name", ["transfer.success", "transfer.failed", "transfer.reversed"])
def test_paystacks_example_transfer_events_are_readable(name: str) -> None:
    data = json.loads((EVENTS_DIR / f"{name}.json").read_text())["data"]
    report = transfer_report(data, "webhook", status=name.removeprefix("transfer."))
    assert report.status is TransferStatus(name.removeprefix("transfer."))
    assert report.amount == data["amount"]


@pytest.mark.parametrize(
    ("status_code", "refused"),
    [(400, True), (404, True), (422, True), (401, False), (429, False), (500, False), (None, False)],
)
def test_only_a_refusal_of_the_request_itself_counts_as_refused(status_code: int | None, refused: bool) -> None:
    assert PaystackError("no", status_code=status_code).refused is refused
