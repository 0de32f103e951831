"""One line per event, in our format: a real Celery worker at `LOG_FORMAT=json` writes only JSON objects, none
twice (Celery's own lines included), to stdout and to its own file; every HTTP request gets one access line."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.lib.infra import free_port, start_embedded_redis, start_redis_server
from app.lib.redis import create_redis
from app.lib.tasks import TaskName, enqueue
from app.main import create_app
from tests.support.processes import service_env, start_api, start_worker

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of its own, so the task this test enqueues is run by this test's worker and no other."""
    binary = shutil.which("redis-server")
    if binary is None:
        url, stop = start_embedded_redis(tmp_path / "redis-data")
        yield url
        stop()
        return
    port = free_port()
    server = start_redis_server(binary, port, tmp_path)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


def json_lines(text: str) -> list[dict[str, str]]:
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not a JSON object: {line!r}\n--- whole output ---\n{text[-4000:]}")
    return lines


async def test_a_json_worker_writes_every_line_once_as_json_to_stdout_and_its_own_file(
    tmp_path: Path, private_redis_url: str
) -> None:
    log_file = tmp_path / "logs" / "app.log"
    env = service_env(REDIS_URL=private_redis_url, LOG_FORMAT="json", LOG_FILE=str(log_file), LOG_LEVEL="INFO")
    worker = start_worker(env, concurrency=1, name="json-worker")
    try:
        reference = f"dep-{uuid.uuid4().hex}"
        redis = create_redis(private_redis_url)
        try:
            assert await enqueue(redis, TaskName.VERIFY_DEPOSIT, reference)
        finally:
            await redis.aclose()
        await asyncio.to_thread(worker.wait_for_output, "verify_deposit[", 30)
        await asyncio.to_thread(worker.wait_for_output, "succeeded in", 30)
        # Read before stopping: Celery's shutdown notice is printed from its signal handler, outside logging.
        output = worker.output()
    finally:
        worker.stop()

    stdout = json_lines(output)
    assert {"time", "level", "logger", "request_id", "message"} <= set(stdout[0])
    repeated = {message: n for message, n in Counter(line["message"] for line in stdout).items() if n > 1}
    assert not repeated, f"logged more than once: {repeated}"
    messages = [line["message"] for line in stdout]
    assert any(message.endswith(" ready.") for message in messages)
    (skipped,) = [line for line in stdout if line["message"] == f"verification of unknown deposit {reference} skipped"]
    task_id = skipped["request_id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), skipped
    # Celery's own task lines, once each and in our format.
    (received,) = [m for m in messages if f"[{task_id}] received" in m]
    (succeeded,) = [m for m in messages if f"[{task_id}] succeeded in" in m]
    assert received.startswith("Task tasks.payments.verify_deposit")
    assert succeeded.startswith("Task tasks.payments.verify_deposit")

    assert sorted(path.name for path in log_file.parent.iterdir()) == ["app.worker.log"]
    written = json_lines((log_file.parent / "app.worker.log").read_text())
    assert [line["message"] for line in written][: len(messages)] == messages


def access_lines(text: str, request_id: str) -> list[str]:
    return [line for line in text.splitlines() if f" app.access [{request_id}] " in line]


def test_each_request_to_a_real_api_gets_one_access_line_without_its_query(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    api, base_url = start_api(service_env(LOG_FILE=str(log_file), LOG_LEVEL="INFO"))
    try:
        found = httpx.get(f"{base_url}/health?code=not-for-logs", headers={"X-Request-ID": "access-health"})
        missing = httpx.post(f"{base_url}/no/such/route", headers={"X-Request-ID": "access-missing"})
        assert found.status_code == 200
        assert missing.status_code in {404, 405}
        assert missing.headers["x-request-id"] == "access-missing"
    finally:
        api.stop()

    written = (tmp_path / "app.api.log").read_text()
    for text in (api.output(), written):
        (health,) = access_lines(text, "access-health")
        assert re.search(r" INFO app\.access \[access-health\] GET /health 200 [0-9]+\.[0-9]ms$", health), health
        (route,) = access_lines(text, "access-missing")
        assert re.search(r" \[access-missing\] POST /no/such/route 40[45] [0-9.]+ms$", route), route
        assert "not-for-logs" not in text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["app.api.log"]


async def test_the_access_line_is_one_record_under_the_requests_id_and_can_be_turned_off(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    for access, expected in ((True, 1), (False, 0)):
        caplog.clear()
        app = create_app(settings.replaced(log_access=access))
        async with AsyncTestClient(app=app) as client:
            response = await client.get("/", headers={"X-Request-ID": f"in-process-{access}"})
        assert response.status_code == 200
        records = [record for record in caplog.records if record.name == "app.access"]
        assert len(records) == expected
        if expected:
            assert re.fullmatch(r"GET / 200 [0-9]+\.[0-9]ms", records[0].getMessage())
