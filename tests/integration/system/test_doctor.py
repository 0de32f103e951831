"""`wallet doctor`'s checks against the run's PostgreSQL and Redis, a Paystack stand-in, and what is broken.

Every failing check says in one line what is wrong and in one more how to fix it; nothing raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url

from app.config import DEVELOPMENT_JWT_SECRET
from app.doctor import Check, exit_code, render, run_checks
from app.lib.infra import create_database_if_missing, drop_database, free_port
from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    from app.config import Settings

CHECKS = [
    "configuration",
    "PostgreSQL",
    "migrations",
    "Redis",
    "Paystack",
    "Paystack webhook secret",
    "JWT secret",
]


@pytest.fixture(scope="module")
def private_paystack() -> Iterator[PaystackStandIn]:
    """A stand-in of the module's own (the run's shared one is served by the payments tests)."""
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture
def healthy(settings: Settings, private_paystack: PaystackStandIn) -> Settings:
    """The run's migrated database and Redis, and a Paystack that accepts the key."""
    return settings.replaced(
        paystack_base_url=private_paystack.base_url, paystack_secret_key=private_paystack.secret_key
    )


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def _failed(checks: list[Check]) -> set[str]:
    return {check.name for check in checks if not check.ok}


def _assert_reported_in_two_lines(checks: list[Check]) -> None:
    for check in checks:
        assert check.detail
        assert "\n" not in check.detail
        assert "\n" not in check.fix
        if not check.ok:
            assert check.fix, check
    report = render(checks)
    assert "Traceback" not in report
    failed = [check for check in checks if not check.ok]
    assert len(report.splitlines()) == len(checks) + len(failed) + 1


def test_everything_is_fine_against_the_test_database_redis_and_paystack(
    healthy: Settings, private_paystack: PaystackStandIn
) -> None:
    checks = run_checks(healthy)

    assert [check.name for check in checks] == CHECKS
    assert _failed(checks) == set(), render(checks)
    assert exit_code(checks) == 0
    assert render(checks).endswith(f"all {len(CHECKS)} checks passed")
    assert _by_name(checks)["migrations"].detail.startswith("at head")
    assert any(request.path == "/bank" for request in private_paystack.requests)
    assert private_paystack.validation_errors == []


def test_an_unreachable_database_fails_with_one_line_and_no_password(healthy: Settings) -> None:
    url = f"postgresql+asyncpg://wallet:hunter2@127.0.0.1:{free_port()}/wallet"

    checks = run_checks(healthy.replaced(database_url=url))

    assert _failed(checks) == {"PostgreSQL", "migrations"}
    database = _by_name(checks)["PostgreSQL"]
    assert database.detail.startswith("cannot connect to postgresql+asyncpg://wallet:***@127.0.0.1:")
    assert "start PostgreSQL" in database.fix
    assert "hunter2" not in render(checks)
    assert exit_code(checks) == 1
    _assert_reported_in_two_lines(checks)


@pytest.fixture
def unmigrated_database_url(settings: Settings) -> Iterator[str]:
    url = make_url(settings.database.url).set(database=f"wallet_doctor_{uuid.uuid4().hex[:10]}")
    database_url = url.render_as_string(hide_password=False)
    create_database_if_missing(database_url)
    yield database_url
    drop_database(database_url)


def test_a_database_without_migrations_is_not_at_head(healthy: Settings, unmigrated_database_url: str) -> None:
    checks = run_checks(healthy.replaced(database_url=unmigrated_database_url))

    assert _failed(checks) == {"migrations"}
    migrations = _by_name(checks)["migrations"]
    assert migrations.detail.startswith("none applied")
    assert "wallet migrate" in migrations.fix
    _assert_reported_in_two_lines(checks)


def test_a_missing_database_says_wallet_migrate_creates_it(healthy: Settings, settings: Settings) -> None:
    url = make_url(settings.database.url).set(database=f"wallet_doctor_missing_{uuid.uuid4().hex[:10]}")

    checks = run_checks(healthy.replaced(database_url=url.render_as_string(hide_password=False)))

    assert _failed(checks) == {"PostgreSQL", "migrations"}
    assert "wallet migrate" in _by_name(checks)["PostgreSQL"].fix
    _assert_reported_in_two_lines(checks)


def test_an_unreachable_redis_fails(healthy: Settings) -> None:
    checks = run_checks(healthy.replaced(redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0"))

    assert _failed(checks) == {"Redis"}
    redis = _by_name(checks)["Redis"]
    assert redis.detail.startswith("no answer to PING at redis://:***@127.0.0.1:")
    assert "start Redis" in redis.fix
    assert "hunter2" not in render(checks)
    _assert_reported_in_two_lines(checks)


def test_an_unreachable_paystack_fails(healthy: Settings) -> None:
    checks = run_checks(healthy.replaced(paystack_base_url=f"http://127.0.0.1:{free_port()}"))

    assert _failed(checks) == {"Paystack"}
    assert "PAYSTACK_BASE_URL" in _by_name(checks)["Paystack"].fix
    _assert_reported_in_two_lines(checks)


def test_a_refused_paystack_key_fails(healthy: Settings) -> None:
    checks = run_checks(healthy.replaced(paystack_secret_key="sk_test_not_the_right_one"))

    assert _failed(checks) == {"Paystack"}
    paystack = _by_name(checks)["Paystack"]
    assert "refused PAYSTACK_SECRET_KEY" in paystack.detail
    assert "sk_test_not_the_right_one" not in render(checks)


def test_outside_development_the_secrets_must_be_real(healthy: Settings) -> None:
    checks = run_checks(healthy.replaced(jwt_secret=DEVELOPMENT_JWT_SECRET, paystack_secret_key=""))

    assert _failed(checks) == {"configuration", "Paystack", "Paystack webhook secret", "JWT secret"}
    assert "JWT_SECRET" in _by_name(checks)["configuration"].detail
    assert "PAYSTACK_SECRET_KEY" in _by_name(checks)["Paystack webhook secret"].fix
    assert DEVELOPMENT_JWT_SECRET not in render(checks)
    _assert_reported_in_two_lines(checks)


def test_in_development_without_paystack_keys_the_sandbox_is_named(healthy: Settings) -> None:
    checks = run_checks(healthy.replaced(app_env="development", paystack_secret_key=""))

    assert _failed(checks) == set(), render(checks)
    assert "`wallet up`" in _by_name(checks)["Paystack"].detail
