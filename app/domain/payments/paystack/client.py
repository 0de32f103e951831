"""`PaystackClient`: the calls the service makes to Paystack, each answered in the service's own shapes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import httpx
import msgspec

from app.domain.payments.paystack.shapes import (
    PaymentReport,
    ReportSource,
    TransferReport,
    transaction_report,
    transfer_report,
)
from app.domain.payments.paystack.transport import (
    PaystackError,
    PaystackTransport,
    check_reference,
    data_of,
    not_found,
    read_envelope,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

DUPLICATE_REFERENCE: Final = "duplicate_reference"
"""Paystack's `code` when a reference was already used on the integration."""


class InitializedTransaction(msgspec.Struct, frozen=True):
    """A transaction Paystack created: the customer pays at `authorization_url`."""

    authorization_url: str
    access_code: str
    reference: str


class PaystackBank(msgspec.Struct, frozen=True):
    """One bank of Paystack's `GET /bank` list, as much of it as the service reads."""

    name: str
    code: str
    currency: str
    active: bool = True
    is_deleted: bool | None = False


class ResolvedAccount(msgspec.Struct, frozen=True):
    """A bank account Paystack resolved (`GET /bank/resolve`): the name the bank holds for it."""

    account_number: str
    account_name: str


class _Recipient(msgspec.Struct, frozen=True):
    recipient_code: str


class PaystackClient(PaystackTransport):
    """Paystack's API as the service uses it.

    Example:
        ```python
        async with PaystackClient(settings.paystack) as paystack:
            created = await paystack.initialize(email=..., amount=5000, reference=ref, currency="NGN")
        ```
    """

    async def initialize(
        self,
        *,
        email: str,
        amount: int,
        reference: str,
        currency: str,
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> InitializedTransaction:
        """Create a transaction the customer then pays on Paystack's checkout page.

        Every attempt carries the same reference, so a retry can never create a second transaction: Paystack
        rejects a reused reference with `duplicate_reference`.

        Args:
            email: The paying customer's email.
            amount: Amount in the currency's subunit (kobo for NGN), at least 1.
            reference: Our unique reference for the transaction (letters, digits, `-`, `.`, `=`).
            currency: ISO currency code, e.g. `NGN`.
            callback_url: Where Paystack sends the customer after paying; None keeps the dashboard's.
            metadata: Custom data Paystack stores and echoes back in the transaction and its webhooks.

        Raises:
            ValueError: If the amount or reference is malformed (a bug in the caller, not a Paystack failure).
            PaystackError: If Paystack refused the transaction (a reference already used included, even when
                an earlier attempt of this same call is what used it: Paystack will not repeat the access code),
                answered something unreadable, or could not be reached within the attempts.
        """
        check_reference(reference)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            msg = f"amount must be a positive integer in the currency's subunit, got {amount!r}"
            raise ValueError(msg)
        body: dict[str, Any] = {"email": email, "amount": amount, "reference": reference, "currency": currency}
        if callback_url is not None:
            body["callback_url"] = callback_url
        if metadata is not None:
            body["metadata"] = dict(metadata)

        response, attempts = await self.send("POST", "/transaction/initialize", json=body)
        envelope = read_envelope(response, operation="initialize")
        if envelope.code == DUPLICATE_REFERENCE and attempts > 1:
            logger.warning(
                "Paystack initialize %s: duplicate_reference on attempt %d; an earlier attempt created the "
                "transaction but its answer was lost",
                reference,
                attempts,
            )
            raise PaystackError(
                f"{envelope.message or 'Duplicate Transaction Reference'}: an earlier attempt may have created it",
                status_code=response.status_code,
                code=DUPLICATE_REFERENCE,
            )
        created = data_of(response, envelope, operation="initialize", convert_to=InitializedTransaction)
        if created.reference != reference:
            logger.error("Paystack initialize %s answered for another reference %s", reference, created.reference)
            msg = "Paystack answered for another reference"
            raise PaystackError(msg, status_code=response.status_code)
        return created

    async def verify(self, reference: str) -> PaymentReport:
        """Paystack's current view of a transaction (`GET /transaction/verify/{reference}`).

        Raises:
            ValueError: If the reference is malformed.
            PaystackNotFound: If Paystack knows no transaction with this reference.
            PaystackError: On any other refusal, an unreadable answer, an answer about another reference, or
                no answer within the attempts.
        """
        check_reference(reference)
        response, _ = await self.send("GET", f"/transaction/verify/{reference}")
        envelope = read_envelope(response, operation="verify")
        unknown = not_found(response, envelope, operation="verify", reference=reference)
        if unknown is not None:
            raise unknown
        data_of(response, envelope, operation="verify", convert_to=dict)
        try:
            report = transaction_report(envelope.data, ReportSource.VERIFICATION)
        except ValueError as exc:
            logger.error("Paystack verify %s: unexpected data: %s", reference, exc)
            msg = f"Paystack answered with unexpected data: {exc}"
            raise PaystackError(msg, status_code=response.status_code) from exc
        if report.reference != reference:
            msg = f"Paystack answered the verification of {reference} for {report.reference}"
            raise PaystackError(msg, status_code=response.status_code)
        return report

    async def list_banks(self, currency: str) -> list[PaystackBank]:
        """The banks Paystack pays out to in `currency` (`GET /bank?currency=`), active and not deleted.

        Raises:
            PaystackError: On a refusal, an unreadable answer, or no answer within the attempts.
        """
        response, _ = await self.send("GET", "/bank", params={"currency": currency})
        envelope = read_envelope(response, operation="list banks")
        banks = data_of(response, envelope, operation="list banks", convert_to=list[PaystackBank])
        return [bank for bank in banks if bank.active and not bank.is_deleted]

    async def resolve_account(self, *, account_number: str, bank_code: str) -> ResolvedAccount:
        """The name the bank holds for this account (`GET /bank/resolve`).

        Raises:
            PaystackError: Paystack could not resolve it (`refused`: the account or bank is wrong), failed, or
                could not be reached.
        """
        response, _ = await self.send(
            "GET", "/bank/resolve", params={"account_number": account_number, "bank_code": bank_code}
        )
        envelope = read_envelope(response, operation="resolve account")
        return data_of(response, envelope, operation="resolve account", convert_to=ResolvedAccount)

    async def create_recipient(self, *, name: str, account_number: str, bank_code: str, currency: str) -> str:
        """A `nuban` transfer recipient's code (`POST /transferrecipient`); Paystack returns the existing
        recipient for an account it knows, so a repeated call creates nothing new.

        Raises:
            PaystackError: Paystack refused the recipient (`refused`), failed, or could not be reached.
        """
        body = {
            "type": "nuban",
            "name": name,
            "account_number": account_number,
            "bank_code": bank_code,
            "currency": currency,
        }
        response, _ = await self.send("POST", "/transferrecipient", json=body)
        envelope = read_envelope(response, operation="create recipient")
        return data_of(response, envelope, operation="create recipient", convert_to=_Recipient).recipient_code

    async def initiate_transfer(
        self, *, amount: int, recipient_code: str, reference: str, currency: str, reason: str | None
    ) -> TransferReport:
        """Start a transfer from the Paystack balance (`POST /transfer`) with OUR reference.

        Sent once, never retried here: when the answer is lost (timeout, 5xx) Paystack may hold the transfer, and
        the caller must ask (`verify_transfer`) before sending it again; Paystack refuses a reference it has seen.

        Raises:
            ValueError: the reference is malformed.
            PaystackError: Paystack refused the transfer (`refused`: its message says why, e.g. its balance is
                too low), or its outcome is unknown (no answer, a 5xx, an unreadable answer).
        """
        check_reference(reference)
        body: dict[str, Any] = {
            "source": "balance",
            "amount": amount,
            "recipient": recipient_code,
            "reference": reference,
            "currency": currency,
        }
        if reason:
            body["reason"] = reason
        response, _ = await self.send("POST", "/transfer", json=body, retry=False)
        envelope = read_envelope(response, operation="initiate transfer")
        data_of(response, envelope, operation="initiate transfer", convert_to=dict)
        return self._transfer_report(response, envelope.data, reference, "initiation")

    async def verify_transfer(self, reference: str) -> TransferReport:
        """Paystack's current view of our transfer (`GET /transfer/verify/{reference}`).

        Raises:
            PaystackNotFound: Paystack knows no transfer with this reference.
            PaystackError: on any other refusal, an unreadable answer, or no answer within the attempts.
        """
        check_reference(reference)
        response, _ = await self.send("GET", f"/transfer/verify/{reference}")
        envelope = read_envelope(response, operation="verify transfer")
        unknown = not_found(response, envelope, operation="verify transfer", reference=reference)
        if unknown is not None:
            raise unknown
        data_of(response, envelope, operation="verify transfer", convert_to=dict)
        return self._transfer_report(response, envelope.data, reference, "verification")

    @staticmethod
    def _transfer_report(response: httpx.Response, data: Any, reference: str, source: str) -> TransferReport:
        try:
            report = transfer_report(data, source)
        except ValueError as exc:
            logger.error("Paystack transfer %s (%s): unexpected data: %s", reference, source, exc)
            msg = f"Paystack answered with unexpected data: {exc}"
            raise PaystackError(msg, status_code=response.status_code) from exc
        if report.reference != reference:
            msg = f"Paystack answered about transfer {report.reference} instead of {reference}"
            raise PaystackError(msg, status_code=response.status_code)
        return report
