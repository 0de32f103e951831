"""The OpenAPI document as clients and operators get it: `/docs` and `/docs/openapi.json`.

`/docs` is Swagger UI served from this service's own files (`/docs/assets/...`, from the `swagger-ui-py`
package): no CDN, no inline script or style, no validator badge, so it works offline and under a strict
Content-Security-Policy (`default-src 'self'; img-src 'self' data:`). The page loads the document from
`/docs/openapi.json`.

The document is Litestar's, finished by `finish_document` with what Litestar's spec objects cannot say:
`x-enum-varnames` for every `NamedEnum` (so a generated client names `"1D"` `ApiKeyExpiry.ONE_DAY`, not
`VALUE_1`) and the response headers every answer carries (`X-Request-ID`), every 429 and 503 carries
(`Retry-After`) and a replayed idempotent answer carries (`Idempotent-Replayed`).
"""

from __future__ import annotations

import copy
import html
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from litestar import get
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

from app.lib.idempotency import IDEMPOTENCY_HEADER, REPLAYED_HEADER
from app.lib.schema import NamedEnum

if TYPE_CHECKING:
    from litestar import Request
    from litestar.router import Router

DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/assets"
"""Under `DOCS_PATH`: Swagger UI's own files."""
INITIALIZER_PATH: Final = "/swagger-initializer.js"
"""Under `DOCS_PATH`: the script that starts Swagger UI on the page (a file, not an inline script)."""
SWAGGER_UI_FILES: Final = Path(str(files("swagger_ui") / "static"))
"""Swagger UI 5's distribution (`swagger-ui-bundle.js`, `swagger-ui.css`, ...), as the package ships it."""

_INITIALIZER: Final = b"""window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
});
"""

REQUEST_ID: Final = {
    "description": "This request's id: the caller's `X-Request-ID` when it is 1 to 64 printable ASCII characters, "
    "else a new one. Every log line about the request carries it.",
    "schema": {"type": "string", "maxLength": 64},
}
RETRY_AFTER: Final = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
IDEMPOTENT_REPLAYED: Final = {
    "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`, "
    "replayed: nothing was done again. Absent on a first answer.",
    "schema": {"type": "string", "const": "true"},
}
_ERROR_BODY_REF: Final = "#/components/schemas/ErrorBody"
_REPLAYABLE_ERRORS: Final = frozenset({"400", "404"})
"""Errors answered by the work itself, stored and replayed like a success (a 401, 409, 422, 429 or 5xx never is)."""


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document as served: Litestar's, with enum member names and response headers added (a copy)."""
    document = copy.deepcopy(document)
    schemas = document.get("components", {}).get("schemas", {})
    for named in _named_enums():
        schema = schemas.get(named.__name__)
        if schema is not None and schema.get("enum") == [member.value for member in named]:
            schema["x-enum-varnames"] = [member.name for member in named]
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                _declare_headers(operation)
    return document


def _named_enums() -> list[type[NamedEnum]]:
    found: list[type[NamedEnum]] = []
    pending = list(NamedEnum.__subclasses__())
    while pending:
        named = pending.pop()
        found.append(named)
        pending.extend(named.__subclasses__())
    return found


def _declare_headers(operation: dict[str, Any]) -> None:
    idempotent = any(parameter.get("name") == IDEMPOTENCY_HEADER for parameter in operation.get("parameters", []))
    for status, response in operation["responses"].items():
        headers = response.setdefault("headers", {})
        headers.setdefault("X-Request-ID", REQUEST_ID)
        is_error_body = any(
            media.get("schema", {}).get("$ref") == _ERROR_BODY_REF for media in response.get("content", {}).values()
        )
        if status in {"429", "503"} and is_error_body:
            headers.setdefault("Retry-After", RETRY_AFTER)
        if idempotent and (status.startswith("2") or status in _REPLAYABLE_ERRORS):
            headers.setdefault(REPLAYED_HEADER, IDEMPOTENT_REPLAYED)


class OpenAPIDocument(JsonRenderPlugin):
    """`/docs/openapi.json`: the finished document."""

    def __init__(self) -> None:
        super().__init__(path="/openapi.json")
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = self.render_json(request, finish_document(openapi_schema))
        return self._rendered


class OfflineSwaggerUI(SwaggerRenderPlugin):
    """`/docs`: Swagger UI from this service's own files; the page itself has no inline script or style."""

    def __init__(self) -> None:
        assets = f"{DOCS_PATH}{ASSETS_PATH}"
        super().__init__(
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
            style="",
            path="/",
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema["info"]["title"]))
        document_url = html.escape(self.get_openapi_json_route(request))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{self.favicon}
<link rel="stylesheet" href="{self.css_url}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{document_url}"></div>
<script src="{self.js_url}"></script>
<script src="{self.standalone_preset_js_url}"></script>
<script src="{DOCS_PATH}{INITIALIZER_PATH}"></script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        # Not Swagger UI's OAuth2 redirect page (an inline script): no security scheme here uses OAuth2 flows.
        router.register(create_static_files_router(ASSETS_PATH, directories=[SWAGGER_UI_FILES], name="docs-assets"))
        router.register(
            get(INITIALIZER_PATH, media_type="text/javascript", sync_to_thread=False, include_in_schema=False)(
                _initializer
            )
        )


def _initializer() -> bytes:
    return _INITIALIZER
