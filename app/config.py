"""Settings, read once from the environment and `.env` (real environment variables win).

Every setting is documented in `.env.sample`. `get_settings()` is cached: the process reads its
configuration once, at start-up, and `Settings.check_safe_to_start()` refuses an unsafe one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEVELOPMENT_JWT_SECRET = "development-only-secret-change-me-before-production"  # noqa: S105
"""The default `JWT_SECRET`: fine on a laptop, refused in production."""

MIN_JWT_SECRET_LENGTH = 32
APP_ENVIRONMENTS = ("development", "test", "production")


class UnsafeConfigurationError(RuntimeError):
    """Raised at start-up when `APP_ENV=production` and a setting is unsafe or missing."""


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file: `KEY=value` lines, `#` comments, optional quotes around the value."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _env(name: str, default: str = "", *, source: dict[str, str]) -> str:
    return source.get(name, default)


def _int(name: str, default: int, *, source: dict[str, str]) -> int:
    raw = source.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"{name} must be an integer, got {raw!r}"
        raise UnsafeConfigurationError(msg) from exc


def _list(name: str, *, source: dict[str, str], default: str = "") -> list[str]:
    return [item.strip() for item in source.get(name, default).split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    """The service's whole configuration. Field names are the environment variables, lower-cased."""

    app_env: str = "development"
    """`development`, `test` or `production`."""
    app_name: str = "wallet-service"
    app_version: str = "0.1.0"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/wallet"
    """SQLAlchemy URL of the ledger's PostgreSQL database (asyncpg driver)."""
    database_pool_size: int = 10
    """Connections each process keeps open to PostgreSQL."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis: Celery's broker and result backend, sessions, token deny-list, rate limits, notifications."""

    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_algorithm: str = "HS256"
    jwt_expires_minutes: int = 60
    jwt_issuer: str = "wallet-service"
    jwt_audience: str = "wallet-service-api"

    google_client_id: str = ""
    google_client_secret: str = ""
    google_redirect_uri: str = "http://127.0.0.1:8000/auth/google/callback"
    google_discovery_url: str = "https://accounts.google.com/.well-known/openid-configuration"

    paystack_secret_key: str = ""
    paystack_public_key: str = ""
    paystack_base_url: str = "https://api.paystack.co"
    paystack_callback_url: str = ""
    paystack_webhook_secret: str = ""
    """Key of the webhook HMAC; empty means the secret key, which is what Paystack signs with."""
    paystack_webhook_ips: list[str] = field(default_factory=list)
    """Allowed webhook source addresses; empty allows any."""
    trusted_proxies: list[str] = field(default_factory=list)
    """Addresses of reverse proxies whose `X-Forwarded-For` is believed for the client address."""
    paystack_timeout_seconds: float = 10.0

    currency: str = "NGN"
    deposit_min_amount: int = 1
    """Smallest deposit in kobo. The contract's floor is 1; raise it to Paystack's own minimum for the currency
    to refuse with a 400 what Paystack would refuse at initialise (a 502)."""
    deposit_max_amount: int = 1_000_000_000_000
    deposit_abandoned_final_hours: int = 24
    """Age after which an `abandoned` Paystack transaction is final: the deposit becomes `abandoned`."""
    deposit_verify_after_seconds: int = 300
    """Beat verifies deposits still pending after this long, in case the webhook never arrives."""

    transfer_wait_ms: int = 2000
    settlement_batch_size: int = 500
    stale_transfer_seconds: int = 30
    """Beat re-enqueues settlement for transfers pending longer than this."""

    rate_limit_per_minute: int = 0
    max_body_bytes: int = 64 * 1024
    request_body_timeout_seconds: float = 5.0
    """A request body not received whole within this is answered 408 and its connection closed."""
    max_requests_in_flight_per_caller: int = 8
    """Requests of one user (all their tokens and keys) served at once per API process; more wait their turn."""
    cors_origins: list[str] = field(default_factory=list)
    log_level: str = "INFO"
    log_file: str = "logs/app.log"

    celery_task_events: bool = False
    """Workers send task events (and clients `task-sent`) from the start. Off by default: they cost a broker
    publish per task state; Flower switches a worker's events on by itself while it watches."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def webhook_secret(self) -> str:
        return self.paystack_webhook_secret or self.paystack_secret_key

    def check_safe_to_start(self) -> None:
        """Refuse to run with a configuration that would leak or forge money.

        Outside development the JWT secret must be a real one; in production the Paystack and Google
        credentials must be there too. An unknown `APP_ENV` is refused rather than treated as development
        (a typo must not switch the checks, `wallet token` and the test hooks back on).

        Raises:
            UnsafeConfigurationError: naming every setting that is wrong.
        """
        problems: list[str] = []
        if self.app_env not in APP_ENVIRONMENTS:
            problems.append(f"APP_ENV must be one of {', '.join(APP_ENVIRONMENTS)}, not {self.app_env!r}")
        elif self.app_env != "development" and (
            self.jwt_secret == DEVELOPMENT_JWT_SECRET or len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH
        ):
            problems.append(f"JWT_SECRET must be a random secret of at least {MIN_JWT_SECRET_LENGTH} characters")
        if self.is_production:
            if self.jwt_algorithm not in {"HS256", "HS384", "HS512"}:
                problems.append("JWT_ALGORITHM must be one of HS256, HS384, HS512")
            for name in ("paystack_secret_key", "google_client_id", "google_client_secret", "google_redirect_uri"):
                if not getattr(self, name):
                    problems.append(f"{name.upper()} is required in production")
        if problems:
            raise UnsafeConfigurationError(f"unsafe configuration for APP_ENV={self.app_env}: " + "; ".join(problems))


PRODUCTION_RATE_LIMIT_PER_MINUTE = 600
"""The limit in production when RATE_LIMIT_PER_MINUTE is not set: a deployment is protected unless it opts
out with 0. Elsewhere the default is off, so local load and test runs are not throttled."""

_LIST_FIELDS = {"paystack_webhook_ips", "trusted_proxies", "cors_origins"}
_FLOAT_FIELDS = {"paystack_timeout_seconds", "request_body_timeout_seconds"}


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build `Settings` from `.env` overlaid by the real environment."""
    env_file = dotenv if dotenv is not None else Path(os.environ.get("WALLET_ENV_FILE", PROJECT_ROOT / ".env"))
    source = _read_dotenv(env_file)
    source.update(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.name.upper()
        if name not in source:
            continue
        if f.name in _LIST_FIELDS:
            values[f.name] = _list(name, source=source)
        elif f.name in _FLOAT_FIELDS:
            values[f.name] = float(source[name])
        elif isinstance(f.default, bool):
            values[f.name] = source[name].strip().lower() in {"1", "true", "yes", "on"}
        elif isinstance(f.default, int):
            values[f.name] = _int(name, f.default, source=source)
        else:
            values[f.name] = _env(name, source=source)
    if "RATE_LIMIT_PER_MINUTE" not in source and values.get("app_env") == "production":
        values["rate_limit_per_minute"] = PRODUCTION_RATE_LIMIT_PER_MINUTE
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
