"""A real Celery worker process runs a real task through the same services the API uses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models as m
from app.domain.keys.secrets import display_prefix, generate_secret, hash_secret
from tasks import app as celery_app
from tests.support.processes import ServiceProcess


async def _add_key(db: AsyncSession, user_id, expires_at: datetime) -> m.ApiKey:
    secret = generate_secret()
    key = m.ApiKey(
        user_id=user_id,
        name="sweep-probe",
        key_hash=hash_secret(secret),
        prefix=display_prefix(secret),
        permissions=["read"],
        expires_at=expires_at,
    )
    db.add(key)
    await db.commit()
    return key


async def test_worker_process_runs_the_key_expiry_sweep_against_postgres_and_logs_under_the_task_id(
    worker: ServiceProcess, db: AsyncSession, make_user
) -> None:
    user = await make_user()
    now = datetime.now(UTC)
    due = (await _add_key(db, user.user_id, now - timedelta(seconds=1))).id
    fresh = (await _add_key(db, user.user_id, now + timedelta(hours=1))).id

    task_id = celery_app.send_task("tasks.keys.sweep_expired_keys").id
    for _ in range(100):
        db.expire_all()
        status = await db.scalar(select(m.ApiKey.status).where(m.ApiKey.id == due))
        if status == "expired":
            break
        await asyncio.sleep(0.1)
    assert status == "expired"
    assert await db.scalar(select(m.ApiKey.status).where(m.ApiKey.id == fresh)) == "active"
    output = worker.output()
    assert "tasks.keys.sweep_expired_keys" in output
    # The service's own log line, written inside the task's coroutine, carries the task's id.
    await asyncio.sleep(0.5)
    lines = worker.output().splitlines()
    assert any(f"[{task_id}]" in line and "API keys expired" in line for line in lines), lines[-20:]
