"""The Litestar application: `uvicorn app.main:app`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from app.config import Settings, get_settings
from app.domain.auth.guards import provide_caller
from app.domain.auth.rate_limit import RateLimitMiddleware
from app.domain.routes import ROUTE_HANDLERS
from app.lib.di import resolve_in_order
from app.lib.errors import exception_to_response
from app.lib.heap import freeze_long_lived
from app.lib.http_metrics import http_metrics_middleware
from app.lib.inflight import RequestBodyMiddleware
from app.lib.logging import RequestIdMiddleware, configure_logging, is_one_of_several_api_processes
from app.lib.openapi import DOCS_PATH, OfflineSwaggerUI, OpenAPIDocument
from app.lib.schema import StrictRequest
from app.lib.schema_version import ensure_migrated
from app.process import DEPENDENCIES, PROCESS_STATE_KEY, ApiProcess, process_of

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

logger = logging.getLogger(__name__)


def _openapi(settings: Settings) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Wallet service",
        version=settings.app_version,
        description=(
            "Wallets funded through Paystack, wallet-to-wallet transfers settled by workers, "
            "Google sign-in and scoped API keys. Money is an integer in kobo.\n\n"
            "The OpenAPI document: [/docs/openapi.json](/docs/openapi.json)"
        ),
        path=DOCS_PATH,
        render_plugins=[OfflineSwaggerUI(), OpenAPIDocument()],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(
                    type="http", scheme="bearer", bearer_format="JWT", description="A user's access token."
                ),
                "ApiKeyAuth": SecurityScheme(
                    type="apiKey",
                    name="x-api-key",
                    security_scheme_in="header",
                    description="A service's API key, limited to its permissions.",
                ),
            }
        ),
    )


def create_app(
    settings: Settings | None = None, extra_route_handlers: list[ControllerRouterHandler] | None = None
) -> Litestar:
    """Build the application. Refuses to start with an unsafe configuration."""
    settings = settings or get_settings()
    settings.check_safe_to_start()
    configure_logging(settings, "api", one_of_several=is_one_of_several_api_processes())
    resolve_in_order()
    engine = settings.database.create_engine()

    async def start_process(app: Litestar) -> None:
        app.state[PROCESS_STATE_KEY] = await ApiProcess.start(settings, engine)

    async def migrate_outside_production(_: Litestar) -> None:
        # Convenience for local runs: a fresh database works without a separate `wallet migrate`.
        # Production applies migrations explicitly (`wallet migrate`, the compose `migrate` service).
        if settings.is_production:
            return
        try:
            if await ensure_migrated(settings.database.url):
                logger.info("applied pending database migrations at start-up")
        except Exception:
            logger.warning("could not check database migrations at start-up", exc_info=True)

    def settle_heap(_: Litestar) -> None:
        freeze_long_lived()

    async def stop_process(app: Litestar) -> None:
        await process_of(app).stop()

    application = Litestar(
        route_handlers=[*ROUTE_HANDLERS, *(extra_route_handlers or [])],
        dependencies={"caller": Provide(provide_caller), **DEPENDENCIES},
        exception_handlers={Exception: exception_to_response},
        middleware=[
            DefineMiddleware(RequestBodyMiddleware, http=settings.http),
            http_metrics_middleware,
            RateLimitMiddleware,
        ],
        request_class=StrictRequest,
        cors_config=CORSConfig(allow_origins=settings.http.cors_origins) if settings.http.cors_origins else None,
        openapi_config=_openapi(settings),
        request_max_body_size=settings.http.max_body_bytes,
        on_startup=[start_process, migrate_outside_production, settle_heap],
        on_shutdown=[stop_process],
        debug=False,
        logging_config=None,
    )
    # Outside the router, unlike `middleware`: a request no route matches (404, 405) gets its id and access line too.
    application.asgi_handler = RequestIdMiddleware(application.asgi_handler, access_log=settings.log.access)
    return application


app = create_app()
