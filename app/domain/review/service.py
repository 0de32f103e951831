"""The operator review queue: what the system flags instead of guessing, and how a person closes it.

`flag_for_review` is the one way anything is flagged: it writes a `review_items` row in the caller's
transaction (so the flag exists exactly when the state it explains does), once per `(kind, reference,
source)`, and logs it at ERROR. `ReviewQueue` lists the items and resolves them for `wallet review`; a
resolution records who, when and why, in the item and in the audit log, and moves no money.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db import models as m
from app.lib import audit
from app.lib.storable import storable, storable_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

MAX_REFERENCE_LENGTH = 100


async def flag_for_review(
    session: AsyncSession,
    *,
    kind: m.ReviewKind,
    reference: str,
    reason: str,
    source: str = "",
    details: dict[str, Any] | None = None,
) -> bool:
    """Put an item in the review queue, in the session's transaction; True when it is new.

    The same `(kind, reference, source)` flagged again (a redelivered event, a repeated verification) is
    the same item.
    """
    flagged = await session.scalar(
        pg_insert(m.ReviewItem)
        .values(
            reference=storable_text(reference)[:MAX_REFERENCE_LENGTH],
            kind=kind.value,
            source=storable_text(source)[:128],
            reason=storable_text(reason),
            details=storable(details),
            status=m.ReviewStatus.OPEN.value,
        )
        .on_conflict_do_nothing(index_elements=["kind", "reference", "source"])
        .returning(m.ReviewItem.id)
    )
    if flagged is not None:
        logger.error("flagged for review (%s) %s: %s", kind.value, reference, reason)
    return flagged is not None


@dataclass(frozen=True)
class Resolution:
    reference: str
    resolved: int
    """Open items of that reference now resolved; 0 when there were none."""


class ReviewQueue:
    """Reading and resolving the queue (`wallet review`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def items(self, *, include_resolved: bool = False) -> Sequence[m.ReviewItem]:
        """The items, oldest first; only the open ones unless `include_resolved`."""
        query = select(m.ReviewItem).order_by(m.ReviewItem.created_at, m.ReviewItem.id)
        if not include_resolved:
            query = query.where(m.ReviewItem.status == m.ReviewStatus.OPEN.value)
        return (await self.session.scalars(query)).all()

    async def resolve(self, reference: str, *, note: str, operator: str) -> Resolution:
        """Close every open item of `reference`, recording who, when and why; moves no money.

        Raises:
            ValueError: the note is empty (a resolution must say why).
        """
        note = note.strip()
        if not note:
            msg = "a resolution needs a note saying why"
            raise ValueError(msg)
        resolved = list(
            await self.session.scalars(
                update(m.ReviewItem)
                .where(m.ReviewItem.reference == reference, m.ReviewItem.status == m.ReviewStatus.OPEN.value)
                .values(
                    status=m.ReviewStatus.RESOLVED.value,
                    resolved_at=datetime.now(UTC),
                    resolved_by=operator,
                    resolution_note=note,
                    updated_at=datetime.now(UTC),
                )
                .returning(m.ReviewItem.kind)
                .execution_options(synchronize_session=False)
            )
        )
        if resolved:
            await audit.record(
                self.session,
                actor=f"operator:{operator}",
                action="review.resolved",
                subject=reference,
                details={"note": note, "kinds": sorted(set(resolved))},
            )
        return Resolution(reference=reference, resolved=len(resolved))


async def open_items_by_kind(session: AsyncSession) -> dict[str, int]:
    """Open review items per kind (the `wallet_review_items_open` gauge)."""
    rows = await session.execute(
        select(m.ReviewItem.kind, func.count())
        .where(m.ReviewItem.status == m.ReviewStatus.OPEN.value)
        .group_by(m.ReviewItem.kind)
    )
    return {kind: int(number) for kind, number in rows.tuples()}
