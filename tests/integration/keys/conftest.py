"""The keys tests run against the same app and client as the auth tests."""

from __future__ import annotations

from tests.support.auth import api, wallet_app

__all__ = ("api", "wallet_app")
