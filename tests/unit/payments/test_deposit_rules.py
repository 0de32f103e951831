"""Rules of deposits and webhooks that need no database: references, event keys, Paystack's timestamps."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest

from app.config import Settings
from app.domain.payments.deposits import check_deposit_amount, new_deposit_reference, parse_paystack_time
from app.domain.payments.webhooks import event_key
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
    settings = Settings(deposit_min_amount=100, deposit_max_amount=1_000_000)
    check_deposit_amount(100, settings)
    check_deposit_amount(1_000_000, settings)
    with pytest.raises(RequestValidationError, match="at least 100 kobo"):
        check_deposit_amount(99, settings)
    with pytest.raises(RequestValidationError, match="at most 1000000 kobo"):
        check_deposit_amount(1_000_001, settings)
