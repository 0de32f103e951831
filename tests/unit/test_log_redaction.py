"""Defence in depth: a credential that reaches a log record anyway (in its message, its arguments or its
exception) is replaced before any handler, ours or a host's, writes it."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest

from app.lib.logging import REDACTED, install_secret_redaction, redact

API_KEY = "sk_live_" + secrets.token_urlsafe(32)
PAYSTACK_KEY = "sk_test_" + secrets.token_hex(20)
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmU"


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing through a plain handler, as a host's (Celery's) handler would."""
    install_secret_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.redaction.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_api_keys_paystack_keys_and_jwts_in_messages_and_arguments_are_redacted(
    written: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = written
    logger.info("presented %s", API_KEY)
    logger.warning(f"Authorization: Bearer {JWT}")  # the careless call the redaction is for
    logger.debug("config %r", {"paystack": PAYSTACK_KEY})
    text = stream.getvalue()
    for credential in (API_KEY, API_KEY.removeprefix("sk_live_"), PAYSTACK_KEY, JWT, JWT.rsplit(".", 1)[1]):
        assert credential not in text
    assert text.count(REDACTED) == 3
    assert "Authorization: Bearer [REDACTED]" in text


def test_a_credential_quoted_by_an_exception_is_redacted_from_the_traceback(
    written: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = written
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logger.exception("could not check the key")
    text = stream.getvalue()
    assert "Traceback" in text
    assert f"ValueError: bad key {REDACTED}" in text
    assert API_KEY not in text


def test_what_is_meant_to_be_logged_is_kept() -> None:
    """A key's 16-character prefix (shown in `GET /keys`), references and ids are not credentials."""
    line = "key sk_live_AbCdEfGh (prefix) deposit dep-0123456789abcdef0123456789abcdef eyJ.notajwt"
    assert redact(line) == line


def test_an_event_endpoints_signing_secret_is_redacted(written: tuple[logging.Logger, io.StringIO]) -> None:
    from app.domain.webhooks.signing import new_endpoint_secret

    logger, stream = written
    secret = new_endpoint_secret()
    logger.info("registered endpoint with %s", secret)
    assert secret not in stream.getvalue()
    assert REDACTED in stream.getvalue()
