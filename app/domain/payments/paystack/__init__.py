"""Paystack: the one place the service talks to the payment provider, and reads what it says."""

from app.domain.payments.paystack.client import InitializedTransaction, PaystackClient
from app.domain.payments.paystack.shapes import (
    CHARGE_SUCCESS,
    DISPUTE_CREATED,
    REFUND_PROCESSED,
    NotFoundReport,
    PaymentReport,
    PaystackEvent,
    RefundReport,
    ReportSource,
    TransactionStatus,
    decode_event,
    disputed_reference,
    event_head,
    parse_paystack_time,
    refund_report,
    transaction_report,
)
from app.domain.payments.paystack.signature import is_valid_signature, sign_webhook
from app.domain.payments.paystack.transport import PaystackError, PaystackNotFound

__all__ = (
    "CHARGE_SUCCESS",
    "DISPUTE_CREATED",
    "REFUND_PROCESSED",
    "InitializedTransaction",
    "NotFoundReport",
    "PaymentReport",
    "PaystackClient",
    "PaystackError",
    "PaystackEvent",
    "PaystackNotFound",
    "RefundReport",
    "ReportSource",
    "TransactionStatus",
    "decode_event",
    "disputed_reference",
    "event_head",
    "is_valid_signature",
    "parse_paystack_time",
    "refund_report",
    "sign_webhook",
    "transaction_report",
)
