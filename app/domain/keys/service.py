"""API keys: the rules of creating, listing, rolling over, revoking and expiring them."""

from __future__ import annotations

from datetime import UTC, datetime

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import update

from app.db import models as m


class ApiKeyService(SQLAlchemyAsyncRepositoryService[m.ApiKey]):
    """Owns every change to `api_keys`."""

    class Repo(SQLAlchemyAsyncRepository[m.ApiKey]):
        model_type = m.ApiKey

    repository_type = Repo

    async def expire_due_keys(self, now: datetime | None = None) -> int:
        """Mark active keys past their expiry as expired (beat's sweep). Returns how many changed."""
        result = await self.repository.session.execute(
            update(m.ApiKey)
            .where(m.ApiKey.status == m.ApiKeyStatus.ACTIVE.value, m.ApiKey.expires_at <= (now or datetime.now(UTC)))
            .values(status=m.ApiKeyStatus.EXPIRED.value, updated_at=datetime.now(UTC))
        )
        await self.repository.session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
