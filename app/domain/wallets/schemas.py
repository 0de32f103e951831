"""Request and response bodies of `/wallet/balance`, `/wallet/transfer` and `/wallet/transactions`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.lib.schema import BaseStruct

MAX_AMOUNT = 10**12

Amount = Annotated[
    int, msgspec.Meta(ge=1, le=MAX_AMOUNT, description="Kobo (the currency's subunit): an integer from 1 to 10^12.")
]
WalletNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=13,
        max_length=13,
        pattern="^[0-9]{13}$",
        description="The recipient's 13-digit wallet number, as a string.",
        examples=["4566678954356"],
    ),
]
TransactionType = Literal["deposit", "transfer_in", "transfer_out", "withdrawal"]
TransactionStatus = Literal["pending", "processing", "success", "failed", "abandoned", "refunded", "reversed"]
"""A deposit's or transfer's public status; a withdrawal's own (`processing`, `reversed` are withdrawals')."""


class TransferRequest(BaseStruct):
    wallet_number: WalletNumber
    amount: Amount


class TransferResult(BaseStruct):
    """200 once the recipient has been credited; 202 when settlement had not finished within the wait."""

    status: Literal["success", "pending"]
    message: str
    reference: str


TRANSFER_COMPLETED = "Transfer completed"
TRANSFER_ACCEPTED = "Transfer accepted"


def transfer_result(reference: str, *, settled: bool) -> TransferResult:
    if settled:
        return TransferResult(status="success", message=TRANSFER_COMPLETED, reference=reference)
    return TransferResult(status="pending", message=TRANSFER_ACCEPTED, reference=reference)


class Balance(BaseStruct):
    balance: int
    currency: str
    wallet_number: str


class Transaction(BaseStruct):
    """One line of the wallet's history."""

    reference: str
    type: TransactionType
    amount: int
    status: TransactionStatus
    counterparty_wallet_number: str | None
    """The other wallet of a transfer; null for a deposit or a withdrawal."""
    created_at: datetime
