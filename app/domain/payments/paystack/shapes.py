"""What Paystack says, in the service's words: payment reports from webhooks and verifications, and events.

Everything here is decoded from storable JSON (`app.lib.storable`): a NUL a customer typed cannot reach a
statement. Paystack's transaction statuses are an enum; a status it adds later reads as `None` ("no news").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from app.lib.storable import decode_untrusted_json, storable_text

CHARGE_SUCCESS: Final = "charge.success"
REFUND_PROCESSED: Final = "refund.processed"
DISPUTE_CREATED: Final = "charge.dispute.create"
TRANSFER_SUCCESS: Final = "transfer.success"
TRANSFER_FAILED: Final = "transfer.failed"
TRANSFER_REVERSED: Final = "transfer.reversed"
TRANSFER_EVENTS: Final = frozenset({TRANSFER_SUCCESS, TRANSFER_FAILED, TRANSFER_REVERSED})
MAX_REFERENCE_LENGTH: Final = 100


class TransactionStatus(enum.StrEnum):
    """Paystack's status of a transaction; only `success` means the money arrived."""

    SUCCESS = "success"
    FAILED = "failed"
    ABANDONED = "abandoned"
    ONGOING = "ongoing"
    PENDING = "pending"
    PROCESSING = "processing"
    QUEUED = "queued"
    REVERSED = "reversed"

    @classmethod
    def read(cls, value: object) -> TransactionStatus | None:
        try:
            return cls(str(value))
        except ValueError:
            return None


class ReportSource(enum.StrEnum):
    WEBHOOK = "webhook"
    VERIFICATION = "verification"


@dataclass(frozen=True)
class PaymentReport:
    """Paystack's word about one of our references: a `charge.success` webhook or a verification."""

    reference: str
    status: TransactionStatus | None
    amount: int
    currency: str
    paid_at: datetime | None
    data: dict[str, Any]
    """Paystack's transaction object, storable, kept on the deposit for an operator."""
    source: ReportSource


@dataclass(frozen=True)
class NotFoundReport:
    """Paystack knows no transaction with this reference (404 on verify)."""

    reference: str
    source: ReportSource = ReportSource.VERIFICATION


class PaystackEvent(msgspec.Struct):
    event: str
    data: Any = None


class _Transaction(msgspec.Struct):
    reference: str
    amount: int
    currency: str
    status: str = ""
    paid_at: str | None = None


def parse_paystack_time(value: object) -> datetime | None:
    """Paystack's `2016-09-30T21:10:19.000Z`, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def decode_event(raw_body: bytes) -> PaystackEvent:
    """A webhook's event, every string storable.

    Raises:
        ValueError: the body is not JSON, or not an object with an `event` string.
    """
    try:
        return msgspec.convert(decode_untrusted_json(raw_body), type=PaystackEvent)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc


class _Event(msgspec.Struct):
    event: str
    data: msgspec.Raw = msgspec.Raw(b"null")


def event_head(raw_body: bytes) -> tuple[str, str | None]:
    """Event type and reference for the stored event's columns; the body itself is judged by the worker.

    Only these two strings are decoded (and made storable) here: the request stays cheap whatever the body holds.
    """
    try:
        head = msgspec.json.decode(raw_body, type=_Event)
        data = msgspec.json.decode(head.data)
    except msgspec.DecodeError:
        try:  # valid JSON msgspec refuses (a lone surrogate): the slow, tolerant way
            event = decode_event(raw_body)
        except ValueError:
            return "unreadable", None
        head, data = _Event(event=event.event), event.data
    except msgspec.ValidationError:
        return "unreadable", None
    reference = _referenced_transaction(data)
    if not isinstance(reference, str) or len(reference) > MAX_REFERENCE_LENGTH:
        reference = None
    return storable_text(head.event)[:100] or "unknown", storable_text(reference) if reference else None


def _referenced_transaction(data: Any) -> object:
    """The transaction an event is about: `reference` (charges), `transaction_reference` (refunds) or
    `transaction.reference` (disputes)."""
    if not isinstance(data, dict):
        return None
    transaction = data.get("transaction")
    nested = transaction.get("reference") if isinstance(transaction, dict) else None
    return data.get("reference") or data.get("transaction_reference") or nested


@dataclass(frozen=True)
class RefundReport:
    """`refund.processed`: Paystack gave `amount` of the deposit `deposit_reference` back to the customer."""

    deposit_reference: str
    refund_reference: str
    """Paystack's id of this refund: several partial refunds of one deposit each have their own."""
    amount: int
    currency: str


def _short_text(value: object, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REFERENCE_LENGTH:
        msg = f"{name} missing or not a short string"
        raise ValueError(msg)
    return storable_text(value.strip())


def refund_report(data: Any) -> RefundReport:
    """A `refund.processed` event's data (Paystack sends its `amount` as a string of kobo).

    Raises:
        ValueError: a reference, the amount or the currency is missing or unusable.
    """
    if not isinstance(data, dict):
        msg = "data is not an object"
        raise ValueError(msg)
    amount = data.get("amount")
    if isinstance(amount, str) and amount.strip().isdigit():
        amount = int(amount.strip())
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        msg = f"amount {amount!r} is not a positive number of kobo"
        raise ValueError(msg)
    currency = data.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        msg = f"currency {currency!r} is not a currency code"
        raise ValueError(msg)
    return RefundReport(
        deposit_reference=_short_text(data.get("transaction_reference"), "transaction_reference"),
        refund_reference=_short_text(data.get("refund_reference"), "refund_reference"),
        amount=amount,
        currency=currency.upper(),
    )


def disputed_reference(data: Any) -> str:
    """The deposit reference a `charge.dispute.create` is about.

    Raises:
        ValueError: the event names no transaction reference.
    """
    return _short_text(_referenced_transaction(data), "transaction reference")


def transaction_report(data: Any, source: ReportSource, *, status: object = None) -> PaymentReport:
    """A report from Paystack's transaction object (a `charge.success`'s data, or a verification's).

    Raises:
        ValueError: the object lacks a usable reference, amount or currency.
    """
    try:
        transaction = msgspec.convert(data, type=_Transaction)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc
    return PaymentReport(
        reference=transaction.reference,
        status=TransactionStatus.read(status if status is not None else transaction.status),
        amount=transaction.amount,
        currency=transaction.currency,
        paid_at=parse_paystack_time(transaction.paid_at),
        data=data,
        source=source,
    )


class TransferStatus(enum.StrEnum):
    """Paystack's status of a transfer (what `POST /transfer`, its verification and its webhooks say)."""

    PENDING = "pending"
    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    REVERSED = "reversed"
    OTP = "otp"
    """The account has transfer OTP on: the transfer waits for a code nobody will type."""
    ABANDONED = "abandoned"
    BLOCKED = "blocked"
    REJECTED = "rejected"

    @classmethod
    def read(cls, value: object) -> TransferStatus | None:
        try:
            return cls(str(value))
        except ValueError:
            return None


@dataclass(frozen=True)
class TransferReport:
    """Paystack's word about one of our withdrawals' transfers: an initiation's answer, a verification or a
    `transfer.*` webhook."""

    reference: str
    status: TransferStatus | None
    """None for a status Paystack added later: no news."""
    amount: int
    currency: str
    transfer_code: str | None
    reason: str | None
    """Why it failed, when Paystack says (its `gateway_response`, or the failures it lists)."""
    data: dict[str, Any]
    source: str
    """`initiation`, `verification` or `webhook`."""


class _Transfer(msgspec.Struct):
    reference: str
    amount: int
    currency: str
    status: str = ""
    transfer_code: str | None = None
    gateway_response: str | None = None
    failures: Any = None


def transfer_report(data: Any, source: str, *, status: object = None) -> TransferReport:
    """A report from Paystack's transfer object; `status` overrides the object's own (a webhook's event type).

    Raises:
        ValueError: the object lacks a usable reference, amount or currency.
    """
    try:
        transfer = msgspec.convert(data, type=_Transfer)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc
    reason = transfer.gateway_response
    if not reason and transfer.failures:
        reason = storable_text(str(transfer.failures))[:500]
    return TransferReport(
        reference=_short_text(transfer.reference, "reference"),
        status=TransferStatus.read(status if status is not None else transfer.status),
        amount=transfer.amount,
        currency=transfer.currency.upper(),
        transfer_code=transfer.transfer_code,
        reason=reason or None,
        data=data,
        source=source,
    )
