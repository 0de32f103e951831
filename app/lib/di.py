"""Dependencies resolved one after the other instead of in anyio task groups.

Litestar resolves the dependencies of one level of a handler's graph concurrently, in an anyio task group,
whenever there are two or more (here: almost every route, `caller` beside `uow`). Ours do no I/O when they are
provided (the unit of work opens its session lazily; the rest are process singletons), so the task group buys
nothing and cost about 6% of the API's CPU per transfer (`docs/benchmark.md`). `resolve_in_order` replaces
that method with the same loop, in order; the resolved values and the cleanup of generator dependencies are
Litestar's own (`resolve_dependency`, `DependencyCleanupGroup`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar._kwargs.dependencies import resolve_dependency
from litestar._kwargs.kwargs_model import KwargsModel

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection


async def _resolve_in_order(
    self: KwargsModel, connection: ASGIConnection[Any, Any, Any, Any], kwargs: dict[str, Any]
) -> DependencyCleanupGroup:
    cleanup_group = DependencyCleanupGroup()
    for batch in self.dependency_batches:
        for dependency in batch:
            await resolve_dependency(dependency, connection, kwargs, cleanup_group)
    return cleanup_group


def resolve_in_order() -> None:
    """Install the in-order resolution (idempotent; every app of the process shares it)."""
    KwargsModel.resolve_dependencies = _resolve_in_order  # type: ignore[method-assign,assignment]


def resolves_in_order() -> bool:
    return KwargsModel.resolve_dependencies is _resolve_in_order  # type: ignore[comparison-overlap]
