"""The wallet service."""

import sys

# httpx imports its command line client (click, rich, pygments: megabytes in every process) whenever those
# packages are installed, which Litestar's own command line makes them; the service never runs it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
