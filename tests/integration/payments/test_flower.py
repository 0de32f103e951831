"""Flower, started as operators start it, sees the real worker through the same broker."""

from __future__ import annotations

import sys
import time

import httpx

from app.lib.infra import free_port
from tests.support.processes import ServiceProcess, service_env

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-test-password"


def test_flower_reports_the_running_worker_through_its_api_and_metrics(worker: ServiceProcess) -> None:
    port = free_port()
    command = [sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--port={port}", "--address=127.0.0.1"]
    # Flower's API answers only behind authentication (or with FLOWER_UNAUTHENTICATED_API): as in production.
    flower = ServiceProcess(command, service_env(FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}"), "flower")
    base_url = f"http://127.0.0.1:{port}"
    auth = (FLOWER_USER, FLOWER_PASSWORD)
    try:
        workers: dict = {}
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            assert flower.alive(), flower.output()[-3000:]
            try:
                response = httpx.get(f"{base_url}/api/workers", params={"refresh": "1"}, auth=auth, timeout=10)
                if response.status_code == 200:
                    workers = response.json()
                    if any(name.startswith("suite-worker-") for name in workers):
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        names = [name for name in workers if name.startswith("suite-worker-")]
        assert names, f"Flower never reported the worker; it saw {sorted(workers)}:\n{flower.output()[-3000:]}"
        queues = {queue["name"] for queue in workers[names[0]].get("active_queues", [])}
        assert {"settlement", "webhooks", "maintenance"} <= queues

        assert httpx.get(f"{base_url}/api/workers", timeout=10).status_code == 401
        metrics = httpx.get(f"{base_url}/metrics", auth=auth, timeout=10)
        assert metrics.status_code == 200
        assert "flower_" in metrics.text
    finally:
        flower.stop()
