"""Every route of the service, by domain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.domain.auth.controllers import AuthController
from app.domain.keys.controllers import ApiKeyController
from app.domain.payments.controllers import PaymentsController
from app.domain.system.controllers import SystemController
from app.domain.wallets.controllers import WalletController
from app.domain.webhooks.controllers import WebhookController
from app.domain.withdrawals.controllers import BanksController, WithdrawalsController

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    SystemController,
    AuthController,
    ApiKeyController,
    WalletController,
    PaymentsController,
    BanksController,
    WithdrawalsController,
    WebhookController,
]
