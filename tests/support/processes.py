"""Real service processes for end-to-end tests: the API under uvicorn and Celery workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.lib.infra import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """A child process whose output goes to a log file the test can read."""

    def __init__(self, command: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if not self.alive():
                msg = f"{self.name} exited ({self.process.returncode}):\n{self.output()[-4000:]}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"{self.name} did not print {text!r} in {timeout}s:\n{self.output()[-4000:]}"
                raise TimeoutError(msg)
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up, as when a machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def service_env(**overrides: str) -> dict[str, str]:
    """The test run's environment (database, Redis, secrets) for a child process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **overrides}
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def start_api(env: dict[str, str] | None = None, *, workers: int = 1) -> tuple[ServiceProcess, str]:
    """uvicorn serving `app.main:app` on a free port; returns once `/` answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log"]
    api = ServiceProcess(command, env or service_env(), "api")
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base_url}/", timeout=1).status_code == 200:
                return api, base_url
        except httpx.HTTPError:
            pass
        if not api.alive() or time.monotonic() > deadline:
            api.stop()
            msg = f"the API did not start:\n{api.output()[-4000:]}"
            raise RuntimeError(msg)
        time.sleep(0.1)


def start_worker(
    env: dict[str, str] | None = None,
    *,
    queues: str | None = None,
    concurrency: int = 2,
    pool: str | None = None,
    name: str = "worker",
    loglevel: str = "INFO",
) -> ServiceProcess:
    """A real Celery worker (`celery -A tasks worker`); returns once it is ready for tasks."""
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker"]
    command += [
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"{name}-{os.getpid()}-{free_port()}@%h",
    ]
    command += ["--without-gossip", "--without-mingle"]
    if queues:
        command += ["--queues", queues]
    env = {**(env or service_env()), "LOG_LEVEL": loglevel}  # our logging, not Celery's --loglevel, sets it
    if pool:  # None: the configured default, as a user runs it (Celery ignores `--pool prefork` then)
        env = {**env, "WORKER_POOL": pool}
    worker = ServiceProcess(command, env, name)
    worker.wait_for_output("ready.", timeout=60)
    return worker


def start_beat(env: dict[str, str] | None = None) -> ServiceProcess:
    schedule = tempfile.mkstemp(prefix="beat-schedule-")[1]
    command = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO", "--schedule", schedule]
    beat = ServiceProcess(command, env or service_env(), "beat")
    beat.wait_for_output("beat: Starting", timeout=30)
    return beat
