"""The operator review queue: what the system will not guess is flagged once, counted in `/metrics`, listed by
`wallet review list` and closed by `wallet review resolve` with who, when and why in the audit log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import models as m
from app.domain.payments.events import StoredEvents
from app.lib.db import session_maker
from app.lib.uow import UnitOfWork
from tests.support.factories import stored_event
from tests.support.payments import in_process, paystack_example
from tests.support.processes import PROJECT_ROOT, service_env


def _wallet(*args: str, operator: str = "ops-ada") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=service_env(WALLET_OPERATOR=operator),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _gauge(exposition: str, line_start: str) -> float:
    [line] = [line for line in exposition.splitlines() if line.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


async def test_an_event_that_keeps_failing_is_one_open_review_item_a_metric_and_resolved_with_an_audit_trail(
    engine: AsyncEngine, settings: Settings
) -> None:
    reference = f"dep-{uuid.uuid4().hex}"
    body = paystack_example(reference=reference)
    event = await stored_event(engine, body)
    async with session_maker(engine)() as session:
        uow = UnitOfWork(session)
        events = StoredEvents(uow, settings.money)
        for _ in range(2):  # the task's last retry, and beat's next give-up: one finding, one item
            await uow.run(lambda: events.record_failure(event.event_id, RuntimeError("the ledger said no"), final=True))

    async with engine.connect() as connection:
        [item] = (await connection.execute(select(m.ReviewItem).where(m.ReviewItem.reference == reference))).all()
    assert (item.kind, item.status, item.source) == ("event_failing", "open", str(event.event_id))
    assert "the ledger said no" in item.reason

    async with in_process(settings) as app:
        exposition = (await app.get("/metrics")).text
    assert _gauge(exposition, 'wallet_review_items_open{kind="event_failing"}') >= 1
    assert _gauge(exposition, "wallet_webhook_events_failing ") >= 1

    listed = await asyncio.to_thread(_wallet, "review", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert any(entry["reference"] == reference for entry in json.loads(listed.stdout))

    resolved = await asyncio.to_thread(_wallet, "review", "resolve", reference, "--note", "replayed by hand")
    assert resolved.returncode == 0, resolved.stderr
    again = await asyncio.to_thread(_wallet, "review", "resolve", reference, "--note", "twice")
    assert again.returncode == 1
    async with engine.connect() as connection:
        item = (await connection.execute(select(m.ReviewItem).where(m.ReviewItem.reference == reference))).one()
        audit = (
            await connection.execute(
                select(m.AuditEvent).where(m.AuditEvent.subject == reference, m.AuditEvent.action == "review.resolved")
            )
        ).all()
    assert (item.status, item.resolved_by, item.resolution_note) == ("resolved", "ops-ada", "replayed by hand")
    assert item.resolved_at is not None
    assert [(row.actor, row.details["note"]) for row in audit] == [("operator:ops-ada", "replayed by hand")]


def test_a_resolution_without_a_note_is_refused() -> None:
    result = _wallet("review", "resolve", "dep-whatever", "--note", "   ")
    assert result.returncode == 2
    assert "note" in result.stderr


@pytest.mark.parametrize("flag", ["--json", None])
def test_the_review_list_runs_as_a_command(flag: str | None) -> None:
    result = _wallet("review", "list", *([flag] if flag else []))
    assert result.returncode == 0, result.stderr
