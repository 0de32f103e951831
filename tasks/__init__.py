"""The Celery application: `celery -A tasks worker|beat|flower`.

Tasks are thin: each runs one service coroutine on the worker process's event loop (`tasks.runtime`).

Logging is ours, not Celery's: the `setup_logging` receiver below replaces Celery's set-up (no handler of its
own on the root logger, so no line twice), and names the process's role for its log file (`app.lib.logging`).
Celery sends `setup_logging` in a worker and in beat; a worker announces itself first (`celeryd_init`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, setup_logging, worker_process_init

from app.config import UnsafeConfigurationError, get_settings
from app.lib.logging import configure_logging

app = Celery("wallet")
app.config_from_object("celeryconfig")


class _Process:
    role = "beat"
    """`worker` once `celeryd_init` said so; the other Celery process that sets up logging is beat."""


@celeryd_init.connect
def _is_a_worker(instance: Any = None, **_: object) -> None:
    _Process.role = "worker"
    settings = get_settings()
    try:
        # A worker pays out and verifies with Paystack: an unusable address must stop it here, not at a payout.
        settings.check_safe_to_start()
    except UnsafeConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Already now, not only at `setup_logging`: the worker's start-up warnings (running as root, ...) are records.
    _configure_logging()
    if instance is not None and settings.log.format == "json":
        # The start-up banner is printed, not logged: it would break one JSON object per line.
        instance.quiet = True


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    configure_logging(get_settings(), _Process.role)
    logging.captureWarnings(True)


@worker_process_init.connect
def _configure_pool_child_logging(**_: object) -> None:
    # A prefork pool child: its own file, never rotating its parent's.
    configure_logging(get_settings(), "worker", one_of_several=True)


__all__ = ("app",)
