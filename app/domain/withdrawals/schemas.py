"""Bodies of the money-out routes."""

from __future__ import annotations

from typing import Literal

from app.lib.schema import BaseStruct

PayoutCurrency = Literal["NGN", "GHS", "KES", "ZAR"]
"""The currencies Paystack lists banks for (`GET /bank?currency=`)."""


class Bank(BaseStruct):
    name: str
    code: str
    """What a withdrawal's `bank_code` must be."""
    currency: str
