"""`wallet token --email ...`: a working token for a local user, from the real command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from typing import Any

import httpx

from tests.support.processes import PROJECT_ROOT, service_env


def wallet(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=service_env(**env),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_wallet_token_prints_a_working_token_for_a_new_then_the_same_local_user(api: httpx.AsyncClient) -> None:
    email = f"cli-{uuid.uuid4().hex[:10]}@Example.com"
    first = wallet("token", "--email", email, "--name", "Grace Hopper")
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert "\n" not in token, "stdout holds the token alone"
    wallet_number = re.search(r"wallet ([0-9]{13})", first.stderr)
    assert wallet_number, first.stderr

    verified = await api.post("/auth/verify-token", headers={"Authorization": f"Bearer {token}"})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email"] == email.lower()
    assert (await api.get("/keys", headers={"Authorization": f"Bearer {token}"})).status_code == 200

    again = wallet("token", "--email", email.lower(), "--json")
    assert again.returncode == 0, again.stderr
    minted: dict[str, Any] = json.loads(again.stdout)
    assert set(minted) == {"access_token", "token_type", "expires_in", "user_id", "email", "wallet_number"}
    assert minted["user_id"] == verified.json()["user_id"]
    assert minted["wallet_number"] == wallet_number.group(1)


def test_wallet_token_is_refused_in_production() -> None:
    result = wallet("token", "--email", "ops@example.com", APP_ENV="production", JWT_SECRET="p" * 64)
    assert result.returncode == 2
    assert "production" in result.stderr
    assert result.stdout == ""


def test_wallet_token_refuses_something_that_is_not_an_email() -> None:
    result = wallet("token", "--email", "not an email")
    assert result.returncode == 2
    assert "e-mail" in result.stderr
