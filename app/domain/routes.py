"""Every route of the service, by domain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.domain.system.controllers import SystemController

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

ROUTE_HANDLERS: list[ControllerRouterHandler] = [SystemController]
