"""A local Paystack sandbox for development, and the emulation the tests' stand-in is built on.

`wallet up` runs it (`python -m app.sandbox`) when no Paystack keys are configured, outside production: it
answers the service's Paystack calls on loopback, shows a checkout page with Pay and Fail for each deposit, and
finishes payouts with a chosen outcome, sending the signed webhooks Paystack would. It refuses to start with
`APP_ENV=production`.
"""

from app.sandbox.emulation import (
    PAYOUT_OUTCOMES,
    TRANSFER_OUTCOMES,
    PaystackSandbox,
    SandboxTransaction,
    SandboxTransfer,
)

__all__ = ("PAYOUT_OUTCOMES", "TRANSFER_OUTCOMES", "PaystackSandbox", "SandboxTransaction", "SandboxTransfer")
