"""The tests' Paystack: the application's sandbox (`app.sandbox`), validated against Paystack's own description.

`PaystackStandIn` is `PaystackSandbox` with the tests' defaults: every request it receives and every answer it
gives is validated against Paystack's official OpenAPI description (a violation is recorded in
`validation_errors` and answered 500, so a test that talks to Paystack wrongly, or an emulation that answers
wrongly, cannot pass unnoticed); `authorization_url`s point at Paystack's real checkout; transfers stay as
answered until a test moves them; and it sends no webhook of its own: tests deliver them.

Example:
    ```python
    with PaystackStandIn() as paystack:
        settings = Settings().replaced(paystack_base_url=paystack.base_url, paystack_secret_key=paystack.secret_key)
        client = PaystackClient(settings.paystack)
        ...
        paystack.set_status(reference, "success")
        await paystack.deliver_webhook(app_url, paystack.build_charge_success(reference))
        assert paystack.validation_errors == []
    ```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from app.sandbox.emulation import (
    SANDBOX_BANKS,
    TRANSACTION_STATUSES,
    TRANSFER_ANSWERS,
    TRANSFER_EVENTS,
    TRANSFER_STATUSES,
    PaystackSandbox,
    RecordedRequest,
    SandboxTransaction,
    SandboxTransfer,
    Signature,
    transfer_data,
    verify_data,
)

SHARED_PAYSTACK_DIR: Final = Path("/work/shared/paystack")
OPENAPI_PATH: Final = SHARED_PAYSTACK_DIR / "openapi.yaml"
EVENTS_DIR: Final = SHARED_PAYSTACK_DIR / "events"
CHARGE_SUCCESS_PATH: Final = EVENTS_DIR / "charge.success.json"

StandInTransaction = SandboxTransaction
StandInTransfer = SandboxTransfer
STANDIN_BANKS = SANDBOX_BANKS

# Tests replace these to break an answer on purpose; the stand-in looks them up here at each answer.
_verify_data = verify_data
_transfer_data = transfer_data

__all__ = (
    "CHARGE_SUCCESS_PATH",
    "EVENTS_DIR",
    "OPENAPI_PATH",
    "STANDIN_BANKS",
    "TRANSACTION_STATUSES",
    "TRANSFER_ANSWERS",
    "TRANSFER_EVENTS",
    "TRANSFER_STATUSES",
    "PaystackStandIn",
    "RecordedRequest",
    "Signature",
    "StandInTransaction",
    "StandInTransfer",
)


class PaystackStandIn(PaystackSandbox):
    """Paystack's API on `127.0.0.1`, with controls for tests (see `PaystackSandbox`)."""

    unlisted_account_name = "STAND-IN ACCOUNT"
    default_key_prefix = "sk_test_standin_"

    def __init__(
        self,
        *,
        initial_status: str = "ongoing",
        validate: bool = True,
        secret_key: str | None = None,
        port: int | None = None,
    ) -> None:
        """Prepare a stand-in; nothing listens until `start()`.

        Args:
            initial_status: `data.status` of a transaction right after initialisation. Real Paystack reports
                `abandoned` until the customer acts; `ongoing` (the default) reads as "not final yet".
            validate: Validate traffic against the OpenAPI description (turn off only for benchmarks).
            secret_key: The key to accept and sign webhooks with (e.g. the one the app's processes are
                configured with); a random one by default.
            port: The loopback port to serve on (e.g. one reserved in the app's `PAYSTACK_BASE_URL`); a free
                one by default.
        """
        super().__init__(
            secret_key=secret_key,
            port=port,
            payout_outcome="manual",
            initial_status=initial_status,
            checkout_url="https://checkout.paystack.com",
            openapi_path=OPENAPI_PATH if validate else None,
        )

    def _verify_answer_data(self, transaction: SandboxTransaction) -> dict[str, Any]:
        return _verify_data(transaction)

    def _transfer_answer_data(self, transfer: SandboxTransfer) -> dict[str, Any]:
        return _transfer_data(transfer)
