"""What every keyset-paginated list of the API shares: its query parameters, its documented `Link` header and
the answer carrying the next page's URL (`/wallet/transactions`, `/wallet/withdrawals`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.params import QueryParameter

from app.domain.wallets.history import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

if TYPE_CHECKING:
    from app.domain.wallets.history import Cursor

T = TypeVar("T")

PageLimit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description="Items per page, 1 to 200.")]
PageCursor = Annotated[str | None, QueryParameter(description="Opaque; from the previous page's `Link` header.")]
FIRST_PAGE_LIMIT = DEFAULT_PAGE_SIZE


def next_page_header(path: str) -> list[ResponseHeader]:
    """The OpenAPI documentation of a list's `Link` header."""
    return [
        ResponseHeader(
            name="Link",
            value=f'<{path}?limit=50&cursor=...>; rel="next"',
            documentation_only=True,
            description='`<URL of the next page>; rel="next"`; absent on the last page.',
        )
    ]


def page_response(
    request: Request[Any, Any, Any], items: list[T], *, next_cursor: Cursor | None, limit: int, secret: bytes
) -> Response[list[T]]:
    """The page's items, with `Link: <next page>; rel="next"` unless it is the last."""
    headers = {}
    if next_cursor is not None:
        query = urlencode({"limit": limit, "cursor": next_cursor.encode(secret)})
        headers["Link"] = f'<{request.url.with_replacements(query=query)}>; rel="next"'
    return Response(items, headers=headers)
