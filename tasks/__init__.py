"""The Celery application: `celery -A tasks worker|beat|flower`.

Tasks are thin: each runs one service coroutine on the worker process's event loop (`tasks.runtime`).
"""

from __future__ import annotations

from celery import Celery

app = Celery("wallet")
app.config_from_object("celeryconfig")

__all__ = ("app",)
