"""`wallet doctor`: what is wrong with this configuration and the services it depends on, and how to fix it.

Each check reports in one line what it found and, when it fails, in one more line what to do. The checks that
reach out (PostgreSQL, Redis, Paystack) run at once, each with a short timeout, and none raises: an operator
reads a list, never a traceback. URLs are shown without their passwords and secrets never at all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config import DEVELOPMENT_JWT_SECRET, MIN_JWT_SECRET_LENGTH, UnsafeConfigurationError
from app.lib.infra import masked_url, one_line

if TYPE_CHECKING:
    import asyncpg
    from alembic.script import ScriptDirectory

    from app.config import Settings

TIMEOUT_SECONDS = 3.0
"""How long each dependency has to answer."""
CONFIGURATION_FIX = "set the settings named above in .env or the environment (.env.sample describes each one)"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was found (`detail`) and, when it failed, how to fix it (`fix`)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(settings: Settings) -> list[Check]:
    """Check the configuration, PostgreSQL, the migrations, Redis, Paystack, the webhook secret and the JWT secret.

    Never raises: a check that cannot be made is reported as failed, with the reason.
    """
    return asyncio.run(check_all(settings))


async def check_all(settings: Settings) -> list[Check]:
    """`run_checks` inside a running event loop."""
    database, redis, paystack = await asyncio.gather(
        _check_database(settings), _check_redis(settings), _check_paystack(settings)
    )
    return [
        _check_configuration(settings),
        *database,
        redis,
        paystack,
        _check_webhook_secret(settings),
        _check_jwt_secret(settings),
    ]


def render(checks: list[Check]) -> str:
    """One line per check, one more with the fix under each failed one, and a count."""
    lines: list[str] = []
    for check in checks:
        lines.append(f"{'ok' if check.ok else 'FAIL':<5} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"      fix: {check.fix}")
    failed = sum(not check.ok for check in checks)
    lines.append(f"all {len(checks)} checks passed" if not failed else f"{failed} of {len(checks)} checks failed")
    return "\n".join(lines)


def exit_code(checks: list[Check]) -> int:
    """0 when every check passed, else 1."""
    return 0 if all(check.ok for check in checks) else 1


def main() -> int:
    """`wallet doctor`: load the settings, run every check, print the report; the exit code says if any failed."""
    from app.config import get_settings

    try:
        settings = get_settings()
    except UnsafeConfigurationError as exc:
        checks = [Check("configuration", False, _reason(exc), CONFIGURATION_FIX)]
    else:
        checks = run_checks(settings)
    print(render(checks))
    return exit_code(checks)


def _reason(exc: BaseException) -> str:
    """An exception as one short line (some carry none: a timeout says how long it waited)."""
    silent_timeout = isinstance(exc, TimeoutError) and not str(exc).strip()
    text = f"no answer within {TIMEOUT_SECONDS:g} s" if silent_timeout else one_line(exc)
    return text if len(text) <= 300 else text[:297] + "..."


def _check_configuration(settings: Settings) -> Check:
    try:
        settings.check_safe_to_start()
    except UnsafeConfigurationError as exc:
        return Check("configuration", False, _reason(exc), CONFIGURATION_FIX)
    return Check("configuration", True, f"APP_ENV={settings.app_env}, safe to start")


# PostgreSQL and the migrations


async def _check_database(settings: Settings) -> list[Check]:
    """Reach PostgreSQL, then compare its applied migration with the newest one in `migrations/`."""
    where = masked_url(settings.database.url)
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            connection = await settings.database.connect("wallet-doctor")
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return [
            Check("PostgreSQL", False, f"cannot connect to {where}: {_reason(exc)}", _database_fix(exc)),
            Check(
                "migrations",
                False,
                "not checked: no connection to PostgreSQL",
                "fix PostgreSQL first, then run `wallet doctor` again",
            ),
        ]
    reached = Check("PostgreSQL", True, f"connected to {where}")
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            applied = await _applied_revisions(connection)
        return [reached, _compare_with_head(applied, _migration_scripts(settings.database.url))]
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return [
            reached,
            Check(
                "migrations",
                False,
                f"cannot read the applied migration: {_reason(exc)}",
                "check that DATABASE_URL's user may read the alembic_version table",
            ),
        ]
    finally:
        await connection.close(timeout=TIMEOUT_SECONDS)


def _database_fix(exc: BaseException) -> str:
    import asyncpg

    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "run `wallet migrate`: it creates the database and applies the migrations"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return "correct the user and password in DATABASE_URL"
    if isinstance(exc, TimeoutError):
        return "check the host and port in DATABASE_URL, and that no firewall stands between this host and them"
    if isinstance(exc, OSError):
        return "start PostgreSQL, or correct the host and port in DATABASE_URL"
    return "check DATABASE_URL (postgresql+asyncpg://user:password@host:5432/database)"


async def _applied_revisions(connection: asyncpg.Connection) -> list[str]:
    """The revisions recorded in `alembic_version`: none when no migration ever ran."""
    if not await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
        return []
    return [row["version_num"] for row in await connection.fetch("SELECT version_num FROM alembic_version")]


def _migration_scripts(database_url: str) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    from app.lib.migrations import alembic_config

    return ScriptDirectory.from_config(alembic_config(database_url))


def _compare_with_head(applied: list[str], scripts: ScriptDirectory) -> Check:
    from alembic.script.revision import RevisionError

    head = scripts.get_current_head()
    migrate = "run `wallet migrate`"
    if not applied:
        return Check("migrations", False, f"none applied (the newest is {head})", migrate)
    if applied == [head]:
        return Check("migrations", True, f"at head ({head})")
    current = ", ".join(applied)
    try:
        behind = sum(len(list(scripts.iterate_revisions(head, revision))) for revision in applied)
    except RevisionError:
        return Check(
            "migrations",
            False,
            f"the database is at {current}, which this release's migrations do not know (a newer release migrated it)",
            "run the release that migrated this database, or restore a backup that matches this one",
        )
    return Check("migrations", False, f"at {current}, {behind} behind the newest ({head})", migrate)


# Redis


async def _check_redis(settings: Settings) -> Check:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import AuthenticationError, ResponseError

    where = masked_url(settings.redis.url)
    try:
        client = Redis.from_url(
            settings.redis.url,
            socket_connect_timeout=TIMEOUT_SECONDS,
            socket_timeout=TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return Check("Redis", False, f"cannot use REDIS_URL: {_reason(exc)}", "correct REDIS_URL (redis://host:6379/0)")
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            await client.ping()
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        if isinstance(exc, AuthenticationError | ResponseError):
            fix = "put Redis's password in REDIS_URL (redis://:password@host:6379/0)"
        else:
            fix = "start Redis, or correct the host and port in REDIS_URL"
        return Check("Redis", False, f"no answer to PING at {where}: {_reason(exc)}", fix)
    finally:
        await client.aclose()
    return Check("Redis", True, f"PING answered at {where}")


# Paystack


PAYSTACK_KEYS_PAGE = "Paystack's dashboard, Settings > API Keys & Webhooks"


async def _check_paystack(settings: Settings) -> Check:
    """`GET /bank?currency=NGN` with the secret key: Paystack is reachable and accepts the key."""
    import httpx

    paystack = settings.paystack
    if not paystack.secret_key:
        if settings.app_env == "development":
            return Check(
                "Paystack",
                True,
                "no PAYSTACK_SECRET_KEY: `wallet up` runs its local Paystack sandbox and points the service at it",
            )
        fix = f"set PAYSTACK_SECRET_KEY to the secret key on {PAYSTACK_KEYS_PAGE}"
        return Check("Paystack", False, f"PAYSTACK_SECRET_KEY is not set (APP_ENV={settings.app_env})", fix)
    base_url = paystack.base_url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await client.get(
                f"{base_url}/bank",
                params={"currency": "NGN"},
                headers={"Authorization": f"Bearer {paystack.secret_key}", "Accept": "application/json"},
            )
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return Check(
            "Paystack",
            False,
            f"cannot reach {base_url}: {_reason(exc)}",
            "check PAYSTACK_BASE_URL (Paystack's is https://api.paystack.co) and that this host may reach it",
        )
    if response.status_code == 401:
        return Check(
            "Paystack",
            False,
            f"{base_url} refused PAYSTACK_SECRET_KEY (401)",
            f"copy the secret key from {PAYSTACK_KEYS_PAGE} into PAYSTACK_SECRET_KEY",
        )
    if response.status_code != 200:
        return Check(
            "Paystack",
            False,
            f"GET {base_url}/bank answered {response.status_code}",
            "check PAYSTACK_BASE_URL; if it is Paystack's, see https://status.paystack.com and try again",
        )
    mode = {"sk_test_": ", a test key", "sk_live_": ", a live key"}.get(paystack.secret_key[:8], "")
    return Check("Paystack", True, f"{base_url} accepts PAYSTACK_SECRET_KEY{mode}")


def _check_webhook_secret(settings: Settings) -> Check:
    """Paystack's webhooks are verified with PAYSTACK_WEBHOOK_SECRET, else PAYSTACK_SECRET_KEY."""
    paystack = settings.paystack
    name = "Paystack webhook secret"
    if paystack.webhook_secret_setting:
        if paystack.secret_key and paystack.webhook_secret_setting != paystack.secret_key:
            return Check(
                name,
                True,
                "PAYSTACK_WEBHOOK_SECRET, not PAYSTACK_SECRET_KEY: right only if what delivers the webhooks signs "
                "with it (Paystack signs with the secret key)",
            )
        return Check(name, True, "from PAYSTACK_WEBHOOK_SECRET")
    if paystack.secret_key:
        return Check(name, True, "PAYSTACK_SECRET_KEY, which Paystack signs its webhooks with")
    if settings.app_env == "development":
        return Check(name, True, "none: in development `wallet up`'s Paystack sandbox signs and delivers the webhooks")
    return Check(
        name,
        False,
        f"none with APP_ENV={settings.app_env}: every Paystack webhook would be refused",
        "set PAYSTACK_SECRET_KEY (Paystack signs its webhooks with it), or PAYSTACK_WEBHOOK_SECRET for another signer",
    )


def _check_jwt_secret(settings: Settings) -> Check:
    secret = settings.auth.jwt_secret
    name = "JWT secret"
    fix = f"set JWT_SECRET to {MIN_JWT_SECRET_LENGTH}+ random characters, e.g. `openssl rand -hex 32`"
    if settings.app_env == "development":
        detail = "the development default (accepted in development only)" if secret == DEVELOPMENT_JWT_SECRET else "set"
        return Check(name, True, detail)
    if secret == DEVELOPMENT_JWT_SECRET:
        return Check(name, False, f"JWT_SECRET is the development default, refused in {settings.app_env}", fix)
    if len(secret) < MIN_JWT_SECRET_LENGTH:
        return Check(name, False, f"JWT_SECRET has {len(secret)} characters, fewer than {MIN_JWT_SECRET_LENGTH}", fix)
    return Check(name, True, f"set, {len(secret)} characters")
