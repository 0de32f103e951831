"""The banks a wallet can pay out to, from Paystack's `GET /bank`, kept in Redis for a day.

The list changes rarely and every withdrawal checks its `bank_code` against it, so one Paystack call per
currency a day serves every API process. A Redis that cannot be read or written is no reason to refuse:
the list is then asked of Paystack for this request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import msgspec
from redis.exceptions import RedisError

from app.domain.payments.paystack import PaystackError
from app.domain.withdrawals.schemas import Bank
from app.lib.errors import PaymentProviderError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.domain.payments.paystack import PaystackClient

logger = logging.getLogger(__name__)

CACHE_SECONDS: Final = 86_400
_KEY_PREFIX: Final = "paystack:banks:"
_DECODER = msgspec.json.Decoder(list[Bank])


class BankDirectory:
    def __init__(self, redis: Redis, paystack: PaystackClient) -> None:
        self.redis = redis
        self.paystack = paystack

    async def banks(self, currency: str) -> list[Bank]:
        """Paystack's banks for `currency`, sorted by name.

        Raises:
            PaymentProviderError: Paystack could not be asked and no list is cached (502).
        """
        key = _KEY_PREFIX + currency
        try:
            cached = await self.redis.get(key)
        except (RedisError, OSError):
            logger.warning("bank list cache unreadable; asking Paystack", exc_info=True)
            cached = None
        if cached is not None:
            return _DECODER.decode(cached)
        try:
            found = await self.paystack.list_banks(currency)
        except PaystackError as exc:
            raise PaymentProviderError("Paystack could not list its banks; try again.") from exc
        banks = sorted((Bank(name=b.name, code=b.code, currency=b.currency) for b in found), key=lambda b: b.name)
        try:
            await self.redis.set(key, msgspec.json.encode(banks), ex=CACHE_SECONDS)
        except (RedisError, OSError):
            logger.warning("bank list not cached", exc_info=True)
        return banks
