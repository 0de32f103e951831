from __future__ import annotations

from advanced_alchemy.base import UUIDv7AuditBase, orm_registry

Base = UUIDv7AuditBase
"""Rows with a time-ordered UUID id and `created_at`/`updated_at` in UTC."""

metadata = orm_registry.metadata

__all__ = ("Base", "metadata")
