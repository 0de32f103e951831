"""A local Paystack sandbox for development, and the emulation the tests' stand-in is built on.

`wallet up` runs it (`python -m app.sandbox`) when no Paystack keys are configured, outside production: it
answers the service's Paystack calls on loopback, shows a checkout page with Pay and Fail for each deposit, and
finishes payouts with a chosen outcome, sending the signed webhooks Paystack would. It refuses to start with
`APP_ENV=production`.
"""

import sys

from app.sandbox.emulation import (
    PAYOUT_OUTCOMES,
    TRANSFER_OUTCOMES,
    PaystackSandbox,
    SandboxTransaction,
    SandboxTransfer,
)


def command_line(port: int, service_url: str, secret_key: str, *options: str) -> list[str]:
    """The command that runs the sandbox in a process of its own (`wallet up` and the tests start it so)."""
    sandbox = [sys.executable, "-m", "app.sandbox", "--port", str(port), "--service-url", service_url]
    return [*sandbox, "--secret-key", secret_key, *options]


__all__ = (
    "PAYOUT_OUTCOMES",
    "TRANSFER_OUTCOMES",
    "PaystackSandbox",
    "SandboxTransaction",
    "SandboxTransfer",
    "command_line",
)
