"""Text from outside the service, made storable in PostgreSQL before it reaches a statement.

PostgreSQL refuses NUL in `text` and `jsonb`, and UTF-8 cannot carry a lone surrogate (valid JSON): a provider
event holding either would fail every transaction that stores it. `storable` replaces each with U+FFFD, so an
operator still sees where it was; raw bytes are kept elsewhere when they matter.
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
