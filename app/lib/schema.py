"""Request and response schemas: msgspec Structs, decoded strictly.

Money must arrive as a JSON integer, so `StrictRequest` decodes a Struct body in msgspec's strict mode (`"100"`
and `100.0` are not amounts); a mismatch, a body not declared as JSON, a field given twice, invalid UTF-8 or
nesting too deep is a 400 `VALIDATION_ERROR` naming the field.
"""

from __future__ import annotations

import enum
import json
from typing import Any, get_args

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

TOO_DEEP = "The request body is nested too deeply."


class BaseStruct(msgspec.Struct, forbid_unknown_fields=False):
    """Base of every schema."""


class NamedEnum(enum.StrEnum):
    """A closed set of strings in a schema: the OpenAPI document names it after the class (a component of its
    own) and publishes the member names as `x-enum-varnames`, so a generated client says `ApiKeyExpiry.ONE_DAY`
    where the wire says `"1D"` (`app.lib.openapi`)."""


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _body_type(annotation: Any) -> Any | None:
    """The handler's body type when it is a Struct or an optional Struct, else None."""
    if _is_struct(annotation):
        return annotation
    members = get_args(annotation)
    if type(None) in members and len(members) == 2 and any(_is_struct(member) for member in members):
        return annotation
    return None


def _declares_json(content_type: str | None) -> bool:
    # No Content-Type contradicts nothing; text/plain or a form does: a client sending one did not mean JSON.
    if not content_type:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class StrictRequest(Request[Any, Any, Any]):
    """A request whose JSON body is decoded strictly into the handler's Struct."""

    async def json(self) -> Any:
        data_field = getattr(self.route_handler, "parsed_data_field", None)
        target = _body_type(data_field.annotation) if data_field is not None else None
        if target is None:
            try:
                return await super().json()
            except RecursionError as exc:
                raise ValidationException(detail=TOO_DEEP) from exc
        if self._json is Empty:
            body = await self.body()
            if body and not _declares_json(self.headers.get("content-type")):
                raise ValidationException(
                    detail="The request body must be JSON, sent as `Content-Type: application/json`."
                )
            _refuse_duplicate_keys(body)
            try:
                self._json = msgspec.json.decode(body or b"null", type=target, strict=True)
            except msgspec.ValidationError as exc:
                raise ValidationException(
                    detail="Validation failed", extra=[{"message": str(exc), "key": _error_path(str(exc))}]
                ) from exc
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise ValidationException(detail="The request body is not valid JSON.") from exc
            except RecursionError as exc:
                raise ValidationException(detail=TOO_DEEP) from exc
        return self._json


def _refuse_duplicate_keys(body: bytes) -> None:
    """A body naming a field twice is ambiguous (which amount did the client mean?): refuse it."""

    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # A set, not list.count: a body of thousands of keys must not cost quadratic time.
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        return dict(pairs)

    if body.count(b'"') < 4:
        return
    try:
        json.loads(body, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return  # not JSON at all, or nested too deeply: msgspec reports it precisely
    if duplicates:
        raise ValidationException(
            detail=f"Validation failed: the field `{duplicates[0]}` appears more than once.",
            extra=[{"message": "duplicate field", "key": duplicates[0]}],
        )


def _error_path(message: str) -> str | None:
    """`... - at `$.amount`` → `amount`."""
    marker = "at `$."
    if marker not in message:
        return None
    return message.split(marker, 1)[1].rstrip("`")
