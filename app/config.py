"""Settings by concern, read once from the environment and `.env` (real environment variables win).

Each concern (database, Redis, auth, Paystack, money, HTTP, logs, workers) is a small frozen dataclass whose
fields name their environment variable; `.env.sample` documents every one. `get_settings()` reads them once
per process, and `Settings.check_safe_to_start()` refuses a configuration that would leak or forge money.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEVELOPMENT_JWT_SECRET = "development-only-secret-change-me-before-production"  # noqa: S105
"""The default `JWT_SECRET`: fine on a laptop, refused elsewhere."""

MIN_JWT_SECRET_LENGTH = 32
APP_ENVIRONMENTS = ("development", "test", "production")
LOG_FORMATS = ("text", "json")
PRODUCTION_RATE_LIMIT_PER_MINUTE = 600
"""The limit in production when RATE_LIMIT_PER_MINUTE is not set: a deployment is protected unless it opts
out with 0. Elsewhere the default is off, so local load and test runs are not throttled."""


class UnsafeConfigurationError(RuntimeError):
    """Raised at start-up when a setting is unsafe, missing or unreadable; the message names each one."""


def env(name: str, default: Any) -> Any:
    """A settings field read from the environment variable `name`."""
    return field(default=default, metadata={"env": name})


def env_list(name: str) -> Any:
    """A comma-separated list read from the environment variable `name`."""
    return field(default_factory=list, metadata={"env": name})


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = env("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/wallet")
    """SQLAlchemy URL of the ledger's PostgreSQL database (asyncpg driver)."""
    pool_size: int = env("DATABASE_POOL_SIZE", 10)
    """Connections each process keeps open to PostgreSQL (as many again may overflow under bursts)."""

    def create_engine(self) -> AsyncEngine:
        """The process's one engine (the API hands it to advanced-alchemy; workers and commands use it)."""
        from sqlalchemy.ext.asyncio import create_async_engine

        return create_async_engine(
            self.url,
            pool_size=self.pool_size,
            max_overflow=self.pool_size,
            # A connection that died while idle (a restart, a terminated backend) is replaced at checkout
            # instead of failing the next request once the database is back.
            pool_pre_ping=True,
            pool_timeout=5,
            # A server that vanished must become a quick 503, not a request that hangs.
            connect_args={"timeout": 5, "command_timeout": 30, "server_settings": {"application_name": "wallet"}},
        )

    def _asyncpg_arguments(self, application_name: str = "wallet") -> dict[str, Any]:
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        return {
            "user": url.username,
            "password": url.password,
            "host": url.query.get("host") or url.host,
            "port": url.port,
            "database": url.database,
            "timeout": 5,
            "command_timeout": 30,
            "server_settings": {"application_name": application_name},
        }

    async def create_pool(self) -> asyncpg.Pool:
        """A plain asyncpg pool for the hot statements (`UnitOfWork.run_statement`, reads): prepared statements
        cached per connection (`app.lib.pg`)."""
        from app.lib.pg import create_pool

        return await create_pool(self.pool_size, **self._asyncpg_arguments())

    async def connect(self, application_name: str = "wallet") -> asyncpg.Connection:
        """One plain asyncpg connection (a listener's, say, named so that `pg_stat_activity` tells it apart)."""
        import asyncpg

        connection: asyncpg.Connection = await asyncpg.connect(**self._asyncpg_arguments(application_name))
        return connection


@dataclass(frozen=True)
class RedisSettings:
    url: str = env("REDIS_URL", "redis://127.0.0.1:6379/0")
    """Celery's broker, sign-in flows, rate limits, settlement notifications, counters."""


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str = env("JWT_SECRET", DEVELOPMENT_JWT_SECRET)
    """Signs our access tokens (and, derived, pagination cursors); 32+ random characters outside development."""
    jwt_algorithm: str = env("JWT_ALGORITHM", "HS256")
    """Pinned: tokens signed any other way are refused."""
    jwt_expires_minutes: int = env("JWT_EXPIRES_MINUTES", 60)
    """Lifetime of an access token."""
    jwt_issuer: str = env("JWT_ISSUER", "wallet-service")
    """`iss` of our tokens."""
    jwt_audience: str = env("JWT_AUDIENCE", "wallet-service-api")
    """`aud` of our tokens."""
    google_client_id: str = env("GOOGLE_CLIENT_ID", "")
    """OAuth client id at the OpenID Connect provider."""
    google_client_secret: str = env("GOOGLE_CLIENT_SECRET", "")
    """OAuth client secret at the provider."""
    google_redirect_uri: str = env("GOOGLE_REDIRECT_URI", "http://127.0.0.1:8000/auth/google/callback")
    """Where the provider sends the browser back; registered with the provider."""
    google_discovery_url: str = env(
        "GOOGLE_DISCOVERY_URL", "https://accounts.google.com/.well-known/openid-configuration"
    )
    """The provider's discovery document (any OpenID Connect provider works)."""


@dataclass(frozen=True)
class PaystackSettings:
    secret_key: str = env("PAYSTACK_SECRET_KEY", "")
    """Authenticates our calls to Paystack (and, by default, signs its webhooks)."""
    public_key: str = env("PAYSTACK_PUBLIC_KEY", "")
    """For clients that open Paystack's popup themselves; the service does not use it."""
    base_url: str = env("PAYSTACK_BASE_URL", "https://api.paystack.co")
    """Paystack's API (a stand-in's address in tests)."""
    callback_url: str = env("PAYSTACK_CALLBACK_URL", "")
    """Where Paystack sends the customer after paying; empty keeps the dashboard's."""
    webhook_secret_setting: str = env("PAYSTACK_WEBHOOK_SECRET", "")
    """Key of the webhook HMAC; empty means the secret key, which is what Paystack signs with."""
    webhook_ips: list[str] = env_list("PAYSTACK_WEBHOOK_IPS")
    """Addresses allowed to deliver webhooks; empty allows any."""
    timeout_seconds: float = env("PAYSTACK_TIMEOUT_SECONDS", 10.0)
    """How long one call to Paystack may take."""

    @property
    def webhook_secret(self) -> str:
        return self.webhook_secret_setting or self.secret_key


@dataclass(frozen=True)
class MoneySettings:
    currency: str = env("CURRENCY", "NGN")
    """Currency of new wallets."""
    deposit_min_amount: int = env("DEPOSIT_MIN_AMOUNT", 1)
    """Smallest deposit in kobo: the contract's floor is 1; raise it to Paystack's minimum for a 400, not a 502."""
    deposit_max_amount: int = env("DEPOSIT_MAX_AMOUNT", 1_000_000_000_000)
    """Largest deposit in kobo."""
    deposit_abandoned_final_hours: int = env("DEPOSIT_ABANDONED_FINAL_HOURS", 24)
    """Age after which an `abandoned` Paystack transaction is final: the deposit becomes `abandoned`."""
    deposit_verify_after_seconds: int = env("DEPOSIT_VERIFY_AFTER_SECONDS", 300)
    """Beat verifies deposits still pending after this long, in case the webhook never arrives."""
    transfer_wait_ms: int = env("TRANSFER_WAIT_MS", 2000)
    """How long `POST /wallet/transfer` waits for settlement before answering 202."""
    settlement_batch_size: int = env("SETTLEMENT_BATCH_SIZE", 500)
    """Most pending transfers one settlement transaction claims."""
    settlement_linger_ms: int = env("SETTLEMENT_LINGER_MS", 50)
    """Under load (a batch of more than one), the pause before the next batch, so that batches grow with load."""
    stale_transfer_seconds: int = env("STALE_TRANSFER_SECONDS", 30)
    """Beat re-enqueues settlement for transfers pending longer than this."""
    withdrawal_daily_limit: int = env("WITHDRAWAL_DAILY_LIMIT", 0)
    """Kobo a user may withdraw per UTC day (pending, processing and successful withdrawals count); 0: no limit."""
    withdrawal_check_after_seconds: int = env("WITHDRAWAL_CHECK_AFTER_SECONDS", 300)
    """Beat looks again at withdrawals with no outcome after this long: a lost payout task is sent again, and a
    transfer Paystack accepted is verified by reference."""


@dataclass(frozen=True)
class WebhookSettings:
    retry_base_seconds: int = env("WEBHOOK_RETRY_BASE_SECONDS", 30)
    """The wait after an event delivery's first failure; it doubles after each next one, capped at 6 hours."""
    max_attempts: int = env("WEBHOOK_MAX_ATTEMPTS", 12)
    """Attempts of one delivery before it is `failed`."""
    lease_seconds: int = env("WEBHOOK_LEASE_SECONDS", 60)
    """How long a worker holds a delivery it is sending; one killed mid-delivery leaves it due again after this."""
    allow_private_urls_setting: str = env("WEBHOOK_ALLOW_PRIVATE_URLS", "")
    """`true` or `false`; empty: allowed outside production only (see `Settings.webhook_allow_private_urls`)."""


@dataclass(frozen=True)
class HttpSettings:
    host: str = env("API_HOST", "127.0.0.1")
    """`wallet api`'s listen address."""
    port: int = env("API_PORT", 8000)
    """`wallet api`'s port."""
    workers: int = env("API_WORKERS", 1)
    """uvicorn worker processes of `wallet api`."""
    rate_limit_per_minute: int = env("RATE_LIMIT_PER_MINUTE", 0)
    """Requests per minute per verified user, API key or client address; 0 is off (600 in production when unset)."""
    max_body_bytes: int = env("MAX_BODY_BYTES", 64 * 1024)
    """Largest accepted request body (413 above)."""
    request_body_timeout_seconds: float = env("REQUEST_BODY_TIMEOUT_SECONDS", 5.0)
    """A request body not received whole within this is answered 408 and its connection closed."""
    max_requests_in_flight_per_caller: int = env("MAX_REQUESTS_IN_FLIGHT_PER_CALLER", 8)
    """Requests of one user (all their tokens and keys) served at once per API process; more wait their turn."""
    cors_origins: list[str] = env_list("CORS_ORIGINS")
    """Origins allowed by CORS; empty sends no CORS headers."""
    trusted_proxies: list[str] = env_list("TRUSTED_PROXIES")
    """Reverse proxies whose `X-Forwarded-For` is believed for the client address."""


@dataclass(frozen=True)
class LogSettings:
    level: str = env("LOG_LEVEL", "INFO")
    """Lowest level written."""
    file: str = env("LOG_FILE", "logs/app.log")
    """Rotating log file (10 MB x 5), one per process role (`logs/app.api.log`, ...); empty logs to stdout only."""
    format: str = env("LOG_FORMAT", "text")
    """`text` (for people) or `json` (one object per line, for machines)."""
    access: bool = env("LOG_ACCESS", True)
    """One line per HTTP request (method, path, status, duration, request id)."""

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            msg = f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {self.format!r}"
            raise UnsafeConfigurationError(msg)


@dataclass(frozen=True)
class WorkerSettings:
    celery_task_events: bool = env("CELERY_TASK_EVENTS", False)
    """Task events from the start: a broker publish per task state; Flower turns them on while it watches."""
    pool: str = env("WORKER_POOL", "threads")
    """Celery's pool: `threads` (one process, `-c` threads) or `prefork` (`-c` child processes and hard time
    limits). Set here because Celery lets a configured pool win over `--pool prefork` on the command line."""


CONCERNS: dict[str, type] = {
    "database": DatabaseSettings,
    "redis": RedisSettings,
    "auth": AuthSettings,
    "paystack": PaystackSettings,
    "money": MoneySettings,
    "http": HttpSettings,
    "log": LogSettings,
    "worker": WorkerSettings,
    "webhooks": WebhookSettings,
}


@dataclass(frozen=True)
class Settings:
    """The service's whole configuration, by concern."""

    app_env: str = env("APP_ENV", "development")
    """`development`, `test` or `production`."""
    app_name: str = "wallet-service"
    app_version: str = "0.1.0"
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    paystack: PaystackSettings = field(default_factory=PaystackSettings)
    money: MoneySettings = field(default_factory=MoneySettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    log: LogSettings = field(default_factory=LogSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def webhook_allow_private_urls(self) -> bool:
        """Event endpoints may be `http` and local addresses: `WEBHOOK_ALLOW_PRIVATE_URLS`, by default everywhere
        but production."""
        setting = self.webhooks.allow_private_urls_setting.strip().lower()
        if setting:
            return setting in {"1", "true", "yes", "on"}
        return not self.is_production

    def replaced(self, **values: Any) -> Settings:
        """A copy with some settings changed, named like their environment variables in lower case
        (`paystack_base_url=...`): how tests and the benchmark vary one setting."""
        by_concern: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for name, value in values.items():
            if name in _TOP_LEVEL:
                top[name] = value
                continue
            try:
                concern, attribute = SETTING_VARIABLES[name.upper()]
            except KeyError:
                msg = f"no setting is called {name.upper()}"
                raise TypeError(msg) from None
            by_concern.setdefault(concern, {})[attribute] = value
        for concern, changes in by_concern.items():
            top[concern] = replace(getattr(self, concern), **changes)
        return replace(self, **top)

    def check_safe_to_start(self) -> None:
        """Refuse to run with a configuration that would leak or forge money.

        Outside development the JWT secret must be a real one; in production the Paystack and Google
        credentials must be there too. An unknown `APP_ENV` is refused rather than treated as development
        (a typo must not switch the checks, `wallet token` and the test hooks back on).

        Raises:
            UnsafeConfigurationError: naming every setting that is wrong.
        """
        problems: list[str] = []
        auth = self.auth
        if self.app_env not in APP_ENVIRONMENTS:
            problems.append(f"APP_ENV must be one of {', '.join(APP_ENVIRONMENTS)}, not {self.app_env!r}")
        elif self.app_env != "development" and (
            auth.jwt_secret == DEVELOPMENT_JWT_SECRET or len(auth.jwt_secret) < MIN_JWT_SECRET_LENGTH
        ):
            problems.append(f"JWT_SECRET must be a random secret of at least {MIN_JWT_SECRET_LENGTH} characters")
        if self.is_production:
            if auth.jwt_algorithm not in {"HS256", "HS384", "HS512"}:
                problems.append("JWT_ALGORITHM must be one of HS256, HS384, HS512")
            required = {
                "PAYSTACK_SECRET_KEY": self.paystack.secret_key,
                "GOOGLE_CLIENT_ID": auth.google_client_id,
                "GOOGLE_CLIENT_SECRET": auth.google_client_secret,
                "GOOGLE_REDIRECT_URI": auth.google_redirect_uri,
            }
            problems.extend(f"{name} is required in production" for name, value in required.items() if not value)
        problems.extend(self._address_problems())
        if problems:
            raise UnsafeConfigurationError(f"unsafe configuration for APP_ENV={self.app_env}: " + "; ".join(problems))

    def _address_problems(self) -> list[str]:
        """Addresses that would only fail at their first use (a deposit, a sign-in) are refused at start-up,
        named by their setting. In production Paystack must be `https` on a public name: the development
        sandbox (`wallet up`, on loopback) must never receive a real customer's payment."""
        problems: list[str] = []
        web = {
            "PAYSTACK_BASE_URL": self.paystack.base_url,
            "GOOGLE_DISCOVERY_URL": self.auth.google_discovery_url,
            "GOOGLE_REDIRECT_URI": self.auth.google_redirect_uri,
            "PAYSTACK_CALLBACK_URL": self.paystack.callback_url,
        }
        for name, value in web.items():
            if value and not _is_web_address(value):
                problems.append(f"{name} must be an http(s) URL with a host, not {value!r}")
        if not self.database.url.startswith(("postgresql+asyncpg://", "postgresql://")):
            problems.append("DATABASE_URL must be a postgresql+asyncpg:// URL")
        if not self.redis.url.startswith(("redis://", "rediss://", "unix://")):
            problems.append("REDIS_URL must be a redis://, rediss:// or unix:// URL")
        if self.is_production and _is_web_address(self.paystack.base_url):
            from urllib.parse import urlsplit

            parts = urlsplit(self.paystack.base_url)
            if parts.scheme != "https" or _is_loopback(parts.hostname or ""):
                problems.append("PAYSTACK_BASE_URL must be an https URL of Paystack in production, not a local one")
        return problems


def _is_web_address(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        return parts.scheme in {"http", "https"} and bool(parts.hostname) and not any(c.isspace() for c in value)
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in {"localhost", "localhost.localdomain"} or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_TOP_LEVEL = {"app_env", "app_name", "app_version"}
SETTING_VARIABLES: dict[str, tuple[str, str]] = {
    f.metadata["env"]: (concern, f.name) for concern, concern_class in CONCERNS.items() for f in fields(concern_class)
}
"""Environment variable -> (concern, field): one table for reading and for `Settings.replaced`."""


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


def _parse(name: str, raw: str, default: Any) -> Any:
    """The text of variable `name` as the type of its default."""
    if isinstance(default, list) or default is None:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int | float):
        text = raw.strip()
        if not text:
            return default
        try:
            return type(default)(text)
        except ValueError as exc:
            kind = "an integer" if isinstance(default, int) else "a number"
            msg = f"{name} must be {kind}, got {raw!r}"
            raise UnsafeConfigurationError(msg) from exc
    return raw


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build `Settings` from `.env` overlaid by the real environment (or `environ`)."""
    env_file = dotenv if dotenv is not None else Path(os.environ.get("WALLET_ENV_FILE", PROJECT_ROOT / ".env"))
    source = _read_dotenv(env_file)
    source.update(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for variable, (concern, attribute) in SETTING_VARIABLES.items():
        if variable in source:
            default = getattr(CONCERNS[concern](), attribute)
            values[f"{variable.lower()}"] = _parse(variable, source[variable], default)
    if "APP_ENV" in source:
        values["app_env"] = source["APP_ENV"]
    if not source.get("RATE_LIMIT_PER_MINUTE", "").strip() and values.get("app_env") == "production":
        values["rate_limit_per_minute"] = PRODUCTION_RATE_LIMIT_PER_MINUTE
    return Settings().replaced(**values)


def configured_variables(environ: dict[str, str] | None = None, dotenv: Path | None = None) -> set[str]:
    """The settings named in the environment or `.env`: what the operator chose, as opposed to defaults."""
    env_file = dotenv if dotenv is not None else Path(os.environ.get("WALLET_ENV_FILE", PROJECT_ROOT / ".env"))
    named = {key for key, value in _read_dotenv(env_file).items() if value}
    named.update(key for key, value in (os.environ if environ is None else environ).items() if value)
    return named


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
