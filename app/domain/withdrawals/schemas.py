"""Bodies of the money-out routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.domain.wallets.schemas import Amount
from app.lib.schema import BaseStruct

PayoutCurrency = Literal["NGN", "GHS", "KES", "ZAR"]
"""The currencies Paystack lists banks for (`GET /bank?currency=`)."""
WithdrawalState = Literal["pending", "processing", "success", "failed", "reversed"]

AccountNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=10,
        max_length=10,
        pattern="^[0-9]{10}$",
        description="The 10-digit account number (NUBAN), as a string.",
        examples=["0123456789"],
    ),
]
BankCode = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        pattern="^[0-9A-Za-z-]+$",
        description="One of the `code`s of `GET /banks`.",
        examples=["058"],
    ),
]
Narration = Annotated[str, msgspec.Meta(max_length=100, description="At most 100 characters; sent to the bank.")]


class Bank(BaseStruct):
    name: str
    code: str
    """What a withdrawal's `bank_code` must be."""
    currency: str


class WithdrawalRequest(BaseStruct):
    amount: Amount
    bank_code: BankCode
    account_number: AccountNumber
    narration: Narration | None = None


class WithdrawalAccepted(BaseStruct):
    """202: the money is reserved and the payout will follow; watch `GET /wallet/withdrawals/{reference}`."""

    reference: str
    status: Literal["pending"]
    amount: int
    currency: str
    bank_code: str
    bank_name: str
    account_number_last4: str
    account_name: str
    created_at: datetime


class Withdrawal(BaseStruct):
    """One withdrawal: `pending` (reserved), `processing` (Paystack accepted it), then `success`, `failed` or
    `reversed` (the last two gave the money back, with `failure_reason`)."""

    reference: str
    status: WithdrawalState
    amount: int
    currency: str
    bank_code: str
    bank_name: str
    account_number_last4: str
    account_name: str
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None
