"""Text from outside the service, made storable in PostgreSQL before it reaches a statement.

PostgreSQL refuses the NUL character in `text` and in `jsonb` (SQLSTATE 22021 / 22P05), and UTF-8 cannot carry
a lone UTF-16 surrogate (`"\\ud800"` is valid JSON). A provider's event that carried either would make every
transaction that stores it fail, for ever. Whatever a provider sends is passed through `storable` (or decoded
with `decode_untrusted_json`) first: each such character becomes U+FFFD, the replacement character, so an
operator still sees where it was. The raw bytes are kept elsewhere (`webhook_events.raw_body`) when they matter.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` with every NUL and lone surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def storable(value: Any) -> Any:
    """A JSON-shaped value (dicts, lists, strings, numbers) whose every string and key is `storable_text`."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def decode_untrusted_json(raw: bytes) -> Any:
    """Decode JSON from outside into storable builtins.

    msgspec refuses a lone surrogate escape that the JSON grammar allows; such a body is decoded by the
    standard library instead rather than treated as unreadable (a genuine payment must not be ignored for a
    customer's odd name).

    Raises:
        ValueError: the bytes are not JSON at all.
    """
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            msg = f"not JSON: {exc}"
            raise ValueError(msg) from exc
    return storable(decoded)
