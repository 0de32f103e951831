"""A transfer body is an exact 13-digit string and an integer amount from 1 to 10^12, nothing looser."""

from __future__ import annotations

import json

import msgspec
import pytest

from app.domain.wallets.schemas import TransferRequest, transfer_result


def _decode(wallet_number: object, amount: object) -> TransferRequest:
    body = json.dumps({"wallet_number": wallet_number, "amount": amount}).encode()
    return msgspec.json.decode(body, type=TransferRequest, strict=True)


@pytest.mark.parametrize("amount", [1, 3000, 10**12])
def test_amounts_from_one_to_ten_to_the_twelve_are_accepted(amount: int) -> None:
    assert _decode("1234567890123", amount).amount == amount


@pytest.mark.parametrize("amount", [0, -1, 10**12 + 1, 1.0, 5.5, "100", True, None, [1]])
def test_any_other_amount_is_refused(amount: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        _decode("1234567890123", amount)


@pytest.mark.parametrize(
    "number",
    [
        "123456789012",
        "12345678901234",
        "123456789012a",
        "1234567890123\n",
        " 1234567890123",
        "١٢٣٤٥٦٧٨٩٠١٢٣",
        "",
        1234567890123,
    ],
)
def test_a_wallet_number_must_be_exactly_thirteen_ascii_digits(number: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        _decode(number, 100)


def test_the_results_say_completed_or_accepted() -> None:
    assert msgspec.to_builtins(transfer_result("trf_1", settled=True)) == {
        "status": "success",
        "message": "Transfer completed",
        "reference": "trf_1",
    }
    assert msgspec.to_builtins(transfer_result("trf_1", settled=False)) == {
        "status": "pending",
        "message": "Transfer accepted",
        "reference": "trf_1",
    }
