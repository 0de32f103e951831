"""Settings are read once from the environment and `.env`, and production refuses unsafe ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import (
    DEVELOPMENT_JWT_SECRET,
    PRODUCTION_RATE_LIMIT_PER_MINUTE,
    SETTING_VARIABLES,
    Settings,
    UnsafeConfigurationError,
    load_settings,
)

SAFE_PRODUCTION = {
    "APP_ENV": "production",
    "JWT_SECRET": "s" * 48,
    "PAYSTACK_SECRET_KEY": "sk_live_abc",
    "GOOGLE_CLIENT_ID": "client",
    "GOOGLE_CLIENT_SECRET": "secret",
    "GOOGLE_REDIRECT_URI": "https://wallet.example.com/auth/google/callback",
}


def test_environment_variables_win_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        'TRANSFER_WAIT_MS=10\nLOG_LEVEL="DEBUG"\n# a comment\nCORS_ORIGINS=https://a.test, https://b.test\n'
    )
    settings = load_settings({"TRANSFER_WAIT_MS": "25"}, dotenv)
    assert settings.money.transfer_wait_ms == 25
    assert settings.log.level == "DEBUG"
    assert settings.http.cors_origins == ["https://a.test", "https://b.test"]


def test_webhook_secret_defaults_to_the_paystack_secret_key(tmp_path: Path) -> None:
    settings = load_settings({"PAYSTACK_SECRET_KEY": "sk_test_1"}, tmp_path / "none")
    assert settings.paystack.webhook_secret == "sk_test_1"
    assert load_settings({"PAYSTACK_WEBHOOK_SECRET": "whsec"}, tmp_path / "none").paystack.webhook_secret == "whsec"


def test_safe_production_configuration_is_accepted(tmp_path: Path) -> None:
    load_settings(SAFE_PRODUCTION, tmp_path / "none").check_safe_to_start()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"JWT_SECRET": DEVELOPMENT_JWT_SECRET}, "JWT_SECRET"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"PAYSTACK_SECRET_KEY": ""}, "PAYSTACK_SECRET_KEY"),
        ({"GOOGLE_CLIENT_ID": ""}, "GOOGLE_CLIENT_ID"),
        ({"GOOGLE_CLIENT_SECRET": ""}, "GOOGLE_CLIENT_SECRET"),
    ],
)
def test_production_refuses_an_unsafe_setting_and_names_it(
    tmp_path: Path, override: dict[str, str], named: str
) -> None:
    settings = load_settings(SAFE_PRODUCTION | override, tmp_path / "none")
    with pytest.raises(UnsafeConfigurationError, match=named):
        settings.check_safe_to_start()


def test_development_accepts_the_default_secret(tmp_path: Path) -> None:
    load_settings({"APP_ENV": "development"}, tmp_path / "none").check_safe_to_start()


@pytest.mark.parametrize("secret", [DEVELOPMENT_JWT_SECRET, "short"])
def test_any_environment_but_development_refuses_a_default_or_short_jwt_secret(tmp_path: Path, secret: str) -> None:
    settings = load_settings({"APP_ENV": "test", "JWT_SECRET": secret}, tmp_path / "none")
    with pytest.raises(UnsafeConfigurationError, match="JWT_SECRET"):
        settings.check_safe_to_start()
    load_settings({"APP_ENV": "test", "JWT_SECRET": "t" * 40}, tmp_path / "none").check_safe_to_start()


def test_an_unknown_app_env_is_refused_not_taken_for_development(tmp_path: Path) -> None:
    settings = load_settings({"APP_ENV": "prod"}, tmp_path / "none")
    with pytest.raises(UnsafeConfigurationError, match="APP_ENV"):
        settings.check_safe_to_start()


def test_a_non_integer_setting_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(UnsafeConfigurationError, match="TRANSFER_WAIT_MS"):
        load_settings({"TRANSFER_WAIT_MS": "soon"}, tmp_path / "none")


def test_rate_limiting_is_on_in_production_unless_turned_off_and_off_elsewhere_by_default(tmp_path: Path) -> None:
    none = tmp_path / "none.env"
    assert load_settings(SAFE_PRODUCTION, none).http.rate_limit_per_minute == PRODUCTION_RATE_LIMIT_PER_MINUTE > 0
    assert load_settings({**SAFE_PRODUCTION, "RATE_LIMIT_PER_MINUTE": "0"}, none).http.rate_limit_per_minute == 0
    assert load_settings({**SAFE_PRODUCTION, "RATE_LIMIT_PER_MINUTE": "30"}, none).http.rate_limit_per_minute == 30
    assert load_settings({}, none).http.rate_limit_per_minute == 0


def test_every_setting_is_documented_in_the_env_sample() -> None:
    from app.config import PROJECT_ROOT

    sample = (PROJECT_ROOT / ".env.sample").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in sample.splitlines() if "=" in line}
    missing = sorted(set(SETTING_VARIABLES) - documented)
    assert missing == []


def test_a_setting_is_changed_by_its_variable_name_and_an_unknown_name_is_refused() -> None:
    settings = Settings().replaced(paystack_base_url="http://127.0.0.1:9", transfer_wait_ms=5, app_env="test")
    assert (settings.paystack.base_url, settings.money.transfer_wait_ms, settings.app_env) == (
        "http://127.0.0.1:9",
        5,
        "test",
    )
    with pytest.raises(TypeError, match="NO_SUCH_SETTING"):
        Settings().replaced(no_such_setting=1)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PAYSTACK_BASE_URL", "api.paystack.co"),
        ("PAYSTACK_BASE_URL", "ftp://api.paystack.co"),
        ("GOOGLE_DISCOVERY_URL", "accounts.google.com/.well-known/openid-configuration"),
        ("PAYSTACK_CALLBACK_URL", "https:///no-host"),
        ("DATABASE_URL", "mysql://localhost/wallet"),
        ("REDIS_URL", "localhost:6379"),
    ],
)
def test_an_address_that_would_fail_at_first_use_is_refused_at_start_up_by_name(
    tmp_path: Path, setting: str, value: str
) -> None:
    settings = load_settings({"APP_ENV": "development", setting: value}, tmp_path / "none")
    with pytest.raises(UnsafeConfigurationError, match=setting):
        settings.check_safe_to_start()


@pytest.mark.parametrize("base_url", ["http://api.paystack.co", "https://127.0.0.1:9999", "https://localhost"])
def test_production_never_talks_to_a_local_or_plain_http_paystack_such_as_the_sandbox(
    tmp_path: Path, base_url: str
) -> None:
    settings = load_settings(SAFE_PRODUCTION | {"PAYSTACK_BASE_URL": base_url}, tmp_path / "none")
    with pytest.raises(UnsafeConfigurationError, match="PAYSTACK_BASE_URL"):
        settings.check_safe_to_start()
