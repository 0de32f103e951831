"""The data model. Import as `from app.db import models as m`."""

from __future__ import annotations

from app.db.models._api_key import ApiKey, ApiKeyStatus
from app.db.models._audit import AuditEvent
from app.db.models._base import Base
from app.db.models._deposit import Deposit, DepositRefund, DepositStatus, RefundOutcome
from app.db.models._idempotency import IdempotencyRecord
from app.db.models._ledger import JournalKind, LedgerAccount, LedgerEntry, LedgerJournal, SystemAccount
from app.db.models._review import ReviewItem, ReviewKind, ReviewStatus
from app.db.models._revoked_token import RevokedToken
from app.db.models._transfer import Transfer, TransferStatus
from app.db.models._user import User
from app.db.models._wallet import Wallet
from app.db.models._webhook import DeliveryStatus, EventType, WalletEvent, WebhookDelivery, WebhookEndpoint
from app.db.models._webhook_event import WebhookEvent, WebhookEventStatus
from app.db.models._withdrawal import TransferRecipient, Withdrawal, WithdrawalStatus

__all__ = (
    "ApiKey",
    "ApiKeyStatus",
    "AuditEvent",
    "Base",
    "DeliveryStatus",
    "Deposit",
    "DepositRefund",
    "DepositStatus",
    "EventType",
    "IdempotencyRecord",
    "JournalKind",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerJournal",
    "RefundOutcome",
    "ReviewItem",
    "ReviewKind",
    "ReviewStatus",
    "RevokedToken",
    "SystemAccount",
    "Transfer",
    "TransferRecipient",
    "TransferStatus",
    "User",
    "Wallet",
    "WalletEvent",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookEventStatus",
    "Withdrawal",
    "WithdrawalStatus",
)
