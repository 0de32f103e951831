"""`LOG_FORMAT=json` writes one JSON object per record, redacted like the text; each process role logs to a file
of its own, derived from `LOG_FILE`."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import Settings, UnsafeConfigurationError, load_settings
from app.lib.logging import (
    REDACTED,
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    install_secret_redaction,
    log_file_for,
    make_formatter,
    request_id_var,
)

API_KEY = "sk_live_" + secrets.token_urlsafe(32)


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing through a handler set up as `configure_logging` sets up ours."""
    install_secret_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger(f"test.json.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines_of(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_on_one_line_with_the_documented_fields(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    token = request_id_var.set("req-123")
    try:
        logger.info("transfer %s settled\nover two lines", "tr-1")
    finally:
        request_id_var.reset(token)
    logger.warning('no request: "quoted"')

    first, second = lines_of(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == logger.name
    assert first["request_id"] == "req-123"
    assert first["message"] == "transfer tr-1 settled\nover two lines"
    assert "exc_info" not in first
    moment = datetime.fromisoformat(first["time"])
    assert moment.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60
    assert second == {**second, "level": "WARNING", "request_id": "-", "message": 'no request: "quoted"'}


def test_an_exception_comes_as_its_traceback_text_with_credentials_redacted(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logger.exception("could not check %s", API_KEY)

    (line,) = lines_of(stream)
    assert line["level"] == "ERROR"
    assert line["message"] == f"could not check {REDACTED}"
    assert line["exc_info"].startswith("Traceback")
    assert f"ValueError: bad key {REDACTED}" in line["exc_info"]
    assert API_KEY not in stream.getvalue()
    assert API_KEY.removeprefix("sk_live_") not in stream.getvalue()


def test_text_stays_the_default_format() -> None:
    assert Settings().log.format == "text"
    assert not isinstance(make_formatter("text"), JsonFormatter)
    assert isinstance(make_formatter("json"), JsonFormatter)


def test_an_unknown_log_format_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(UnsafeConfigurationError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"}, tmp_path / "none")
    assert load_settings({"LOG_FORMAT": "json"}, tmp_path / "none").log.format == "json"


def test_the_access_log_can_be_turned_off(tmp_path: Path) -> None:
    assert Settings().log.access is True
    assert load_settings({"LOG_ACCESS": "false"}, tmp_path / "none").log.access is False


@pytest.mark.parametrize(
    ("log_file", "role", "pid", "expected"),
    [
        ("logs/app.log", "api", None, "logs/app.api.log"),
        ("logs/app.log", "worker", None, "logs/app.worker.log"),
        ("logs/app.log", "beat", None, "logs/app.beat.log"),
        ("logs/app.log", "api", 4242, "logs/app.api.4242.log"),
        ("logs/app.log", "worker", 77, "logs/app.worker.77.log"),
        ("/var/log/wallet/service.txt", "beat", None, "/var/log/wallet/service.beat.txt"),
        ("logs/wallet", "api", None, "logs/wallet.api.log"),
    ],
)
def test_each_process_role_writes_a_file_of_its_own(log_file: str, role: str, pid: int | None, expected: str) -> None:
    assert log_file_for(log_file, role, pid) == Path(expected)


def test_no_file_when_log_file_is_empty() -> None:
    assert log_file_for("", "api") is None


def test_configure_logging_writes_the_roles_file_in_the_chosen_format(tmp_path: Path) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    settings = Settings().replaced(log_file=str(tmp_path / "app.log"), log_format="json", log_level="INFO")
    try:
        configure_logging(settings, "worker")
        configure_logging(settings, "worker")  # idempotent: still one handler per destination
        ours = [handler for handler in root.handlers if getattr(handler, "_wallet_handler", False)]
        assert len(ours) == 2
        logging.getLogger("test.configured").info("to the worker's file, %s", API_KEY)
        configure_logging(settings, "beat")
        logging.getLogger("test.configured").info("to beat's file")
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_wallet_handler", False):
                root.removeHandler(handler)
                handler.close()
        for handler in before:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["app.beat.log", "app.worker.log"]
    (worker_line,) = [json.loads(line) for line in (tmp_path / "app.worker.log").read_text().splitlines()]
    assert worker_line["message"] == f"to the worker's file, {REDACTED}"
    (beat_line,) = [json.loads(line) for line in (tmp_path / "app.beat.log").read_text().splitlines()]
    assert beat_line["message"] == "to beat's file"
