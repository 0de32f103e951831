"""The data model. Import as `from app.db import models as m`."""

from __future__ import annotations

from app.db.models._api_key import ApiKey, ApiKeyStatus
from app.db.models._base import Base
from app.db.models._deposit import Deposit, DepositStatus
from app.db.models._idempotency import IdempotencyRecord
from app.db.models._ledger import LedgerAccount, LedgerEntry, LedgerJournal, SystemAccount
from app.db.models._transfer import Transfer, TransferStatus
from app.db.models._user import User
from app.db.models._wallet import Wallet
from app.db.models._webhook_event import WebhookEvent, WebhookEventStatus

__all__ = (
    "ApiKey",
    "ApiKeyStatus",
    "Base",
    "Deposit",
    "DepositStatus",
    "IdempotencyRecord",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerJournal",
    "SystemAccount",
    "Transfer",
    "TransferStatus",
    "User",
    "Wallet",
    "WebhookEvent",
    "WebhookEventStatus",
)
