"""The pure rules of API keys: calendar expiry, permissions, names, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.db import models as m
from app.domain.keys.secrets import KEY_PREFIX, display_prefix, generate_secret, hash_secret
from app.domain.keys.service import clean_name, clean_permissions, expiry_after, status_at
from app.lib.errors import RequestValidationError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expiry", "expected"),
    [
        ("2026-03-10T12:30:00", "1H", "2026-03-10T13:30:00"),
        ("2026-12-31T23:30:00", "1H", "2027-01-01T00:30:00"),
        ("2026-03-10T12:30:00", "1D", "2026-03-11T12:30:00"),
        ("2026-02-28T08:00:00", "1D", "2026-03-01T08:00:00"),
        ("2026-03-10T12:30:00", "1M", "2026-04-10T12:30:00"),
        ("2026-01-31T09:00:00", "1M", "2026-02-28T09:00:00"),
        ("2028-01-31T09:00:00", "1M", "2028-02-29T09:00:00"),
        ("2026-03-31T09:00:00", "1M", "2026-04-30T09:00:00"),
        ("2026-12-15T09:00:00", "1M", "2027-01-15T09:00:00"),
        ("2026-03-10T12:30:00", "1Y", "2027-03-10T12:30:00"),
        ("2028-02-29T10:00:00", "1Y", "2029-02-28T10:00:00"),
    ],
)
def test_expiry_is_calendar_arithmetic_from_creation(now: str, expiry: str, expected: str) -> None:
    assert expiry_after(expiry, at(now)) == at(expected)


def test_expiry_is_to_the_whole_second_and_in_utc() -> None:
    lagos = datetime(2026, 5, 1, 13, 0, 0, 987654, tzinfo=UTC).astimezone(ZoneInfo("Africa/Lagos"))
    assert expiry_after("1H", lagos) == at("2026-05-01T14:00:00")
    assert expiry_after("1H", lagos).tzinfo == UTC


@pytest.mark.parametrize("expiry", ["1h", "1d", "2D", "1W", "", " 1D", "1D ", "30D", "1M1"])
def test_any_other_expiry_is_a_validation_error(expiry: str) -> None:
    with pytest.raises(RequestValidationError):
        expiry_after(expiry, at("2026-01-01T00:00:00"))


def test_permissions_collapse_duplicates_and_keep_the_given_order() -> None:
    assert clean_permissions(["read", "deposit", "read", "deposit"]) == ["read", "deposit"]
    assert clean_permissions(["transfer"]) == ["transfer"]


@pytest.mark.parametrize("permissions", [[], ["admin"], ["read", "Read"], ["read", ""], ["*"]])
def test_empty_or_unknown_permissions_are_a_validation_error(permissions: list[str]) -> None:
    with pytest.raises(RequestValidationError) as raised:
        clean_permissions(permissions)
    assert raised.value.error_code == "VALIDATION_ERROR"


def test_names_are_trimmed_and_1_to_100_characters() -> None:
    assert clean_name("  billing service  ") == "billing service"
    assert clean_name("x" * 100) == "x" * 100
    assert clean_name("  " + "x" * 100 + "\t") == "x" * 100
    for bad in ["", "   ", "\n\t", "x" * 101]:
        with pytest.raises(RequestValidationError):
            clean_name(bad)


def test_a_key_past_its_expiry_shows_expired_before_the_sweep_marks_it() -> None:
    now = datetime.now(UTC)
    key = m.ApiKey(status="active", expires_at=now - timedelta(seconds=1))
    assert status_at(key, now) == "expired"
    key.expires_at = now + timedelta(seconds=1)
    assert status_at(key, now) == "active"
    key.status = "revoked"
    assert status_at(key, now) == "revoked"
    key.status, key.expires_at = "revoked", now - timedelta(days=1)
    assert status_at(key, now) == "revoked"


def test_secrets_are_sk_live_with_at_least_32_random_bytes_and_stored_as_sha256() -> None:
    secret = generate_secret()
    assert secret.startswith(KEY_PREFIX)
    assert len(secret) - len(KEY_PREFIX) >= 43  # 32 bytes, URL-safe base64
    assert generate_secret() != secret
    assert len(hash_secret(secret)) == 64
    assert secret not in hash_secret(secret)
    assert display_prefix(secret) == secret[: len(KEY_PREFIX) + 8]
