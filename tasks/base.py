"""The base of every task: run one coroutine on the process's loop, retry what may succeed later.

A failure that may pass (a deadlock, PostgreSQL or Redis unreachable: `retry_on`) is retried with exponential
backoff and jitter up to `max_retries`; then `given_up` ends the task (re-raising by default: beat recovers).
Subclasses set the policy with class attributes and hooks instead of writing the loop again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Retry

from app.lib.db import is_retryable
from app.lib.errors import is_unavailable
from tasks import runtime

T = TypeVar("T")
logger = logging.getLogger(__name__)


class WalletTask(Task):  # type: ignore[misc]
    abstract = True
    max_retries = 10
    retry_base_seconds = 1.0
    """The first retry comes after about this long; each next one after twice as long."""
    retry_max_seconds = 30.0
    retry_any_failure = False
    """Retry every failure, not only the passing ones (a Paystack that fails is worth asking again)."""

    def run_async(self, work: Callable[[runtime.WorkerContext], Awaitable[T]]) -> T:
        return runtime.run(work)

    def retry_on(self, exc: BaseException) -> bool:
        return self.retry_any_failure or is_retryable(exc) or is_unavailable(exc)

    def backoff_seconds(self, retries: int) -> float:
        ceiling: float = min(self.retry_base_seconds * 2**retries, self.retry_max_seconds)
        return ceiling * (0.5 + random.random() / 2)

    def attempt_failed(self, exc: BaseException, args: tuple[Any, ...], *, final: bool) -> None:
        """Bookkeeping of a failed attempt (e.g. on the row the task works on); nothing by default."""

    def given_up(self, exc: BaseException, args: tuple[Any, ...]) -> Any:
        """The task's end when it will not retry: re-raise by default."""
        raise exc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            final = not self.retry_on(exc) or self.request.retries >= self.max_retries
            try:
                self.attempt_failed(exc, args, final=final)
            except Exception:
                logger.warning("could not record the failure of %s%r", self.name, args, exc_info=True)
            if final:
                return self.given_up(exc, args)
            raise self.retry(exc=exc, countdown=self.backoff_seconds(self.request.retries)) from exc
