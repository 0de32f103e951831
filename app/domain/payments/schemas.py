"""Request and response bodies of the deposit endpoints and the Paystack webhook."""

from __future__ import annotations

from typing import Literal

from app.domain.wallets.schemas import Amount
from app.lib.schema import BaseStruct

DepositState = Literal["pending", "success", "failed", "abandoned", "refunded"]


class DepositRequest(BaseStruct):
    amount: Amount
    """Kobo; the service's own bounds (`DEPOSIT_MIN_AMOUNT`, `DEPOSIT_MAX_AMOUNT`) apply on top."""


class DepositStarted(BaseStruct):
    """A pending deposit: the customer pays at `authorization_url` (or with `access_code` in Paystack's popup)."""

    reference: str
    authorization_url: str
    access_code: str


class DepositStatusBody(BaseStruct):
    """What the service knows of a deposit; `success` means the wallet has been credited."""

    reference: str
    status: DepositState
    amount: int


class WebhookAck(BaseStruct):
    """Paystack only looks at the 200; the body is the contract's."""

    status: bool
