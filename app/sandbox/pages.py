"""The sandbox's pages: what a person sees at checkout and when choosing payouts' outcomes.

Each page is one self-contained HTML document (inline styles, no script, nothing fetched from elsewhere), so the
sandbox works offline; every value from the service or a customer is escaped.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Iterable

    from app.sandbox.emulation import SandboxTransaction, SandboxTransfer

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; } .note { color: #666; font-size: .9rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .4rem 1rem; }
dt { color: #666; } dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
form { display: inline; } button { font-size: 1rem; padding: .5rem 1.4rem; margin: 1rem .5rem 0 0; cursor: pointer; }
.pay { background: #0ba4db; color: white; border: 0; } .fail { background: white; border: 1px solid #c33; color: #c33; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .4rem; border-bottom: 1px solid #ddd; }
td button { margin: 0 .2rem; padding: .2rem .6rem; font-size: .85rem; }
"""


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _money(amount: object, currency: str) -> str:
    """`NGN 5,000.00` for 500000 kobo: Paystack amounts are in the currency's subunit."""
    if isinstance(amount, int):
        return f"{currency} {amount // 100:,}.{amount % 100:02d}"
    return f"{currency} {amount}"


def _transaction_details(transaction: SandboxTransaction) -> str:
    rows = (
        ("Amount", _money(transaction.amount, transaction.currency)),
        ("Email", transaction.email),
        ("Reference", transaction.reference),
        ("Status", transaction.status),
    )
    return "<dl>" + "".join(f"<dt>{name}</dt><dd>{escape(str(value))}</dd>" for name, value in rows) + "</dl>"


def checkout_page(transaction: SandboxTransaction, *, open_: bool) -> str:
    """The checkout page of one transaction: its details, and Pay and Fail while it can still be paid."""
    action = f"/checkout/{quote(transaction.access_code)}"
    buttons = (
        f'<form method="post" action="{action}/pay"><button class="pay" type="submit">Pay</button></form>'
        f'<form method="post" action="{action}/fail"><button class="fail" type="submit">Fail</button></form>'
        '<p class="note">Pay marks the payment successful and sends the signed <code>charge.success</code> webhook; '
        "Fail declines it (Paystack sends no webhook for a failed charge).</p>"
        if open_
        else f'<p class="note">This payment is already {escape(transaction.status)}.</p>'
    )
    return _document(
        "Paystack sandbox checkout",
        f"<h1>Paystack sandbox checkout</h1>\n{_transaction_details(transaction)}\n{buttons}",
    )


def unknown_checkout_page() -> str:
    return _document("Paystack sandbox checkout", "<h1>Unknown checkout</h1><p>No payment has this access code.</p>")


def charge_outcome_page(transaction: SandboxTransaction, service_url: str | None, delivered: bool | None) -> str:
    """What the customer sees after Pay or Fail (when the transaction has no callback URL to return to).

    Args:
        transaction: The transaction after the click.
        service_url: Where the webhook went, or None when the sandbox sends none.
        delivered: Whether the service accepted the `charge.success` webhook; None while still trying.
    """
    if transaction.status != "success":
        outcome = "<p>The payment failed. No webhook is sent; verifying the transaction reports it failed.</p>"
    elif service_url is None:
        outcome = "<p>The payment succeeded. No service URL is configured, so no webhook was sent.</p>"
    elif delivered is None:
        outcome = (
            "<p>The payment succeeded. The service has not accepted the webhook yet; the sandbox keeps trying.</p>"
        )
    elif delivered:
        outcome = f"<p>The payment succeeded and {escape(service_url)} accepted the webhook.</p>"
    else:
        outcome = f"<p>The payment succeeded but {escape(service_url)} refused the webhook (see the sandbox's log).</p>"
    heading = f"<h1>Payment {escape(transaction.status)}</h1>"
    return _document("Paystack sandbox payment", f"{heading}\n{outcome}\n{_transaction_details(transaction)}")


def transfers_page(transfers: Iterable[SandboxTransfer], payout_outcome: str) -> str:
    """Every transfer, newest first, with buttons giving each pending one its outcome."""
    rows = []
    for transfer in reversed(list(transfers)):
        if transfer.status in {"pending", "received"}:
            action = f"/sandbox/transfers/{quote(transfer.reference, safe='')}"
            choices = "".join(
                f'<form method="post" action="{action}/{outcome}"><button type="submit">{outcome}</button></form>'
                for outcome in ("success", "failed", "reversed")
            )
        else:
            choices = ""
        rows.append(
            f"<tr><td><code>{escape(transfer.reference)}</code></td>"
            f"<td>{escape(_money(transfer.amount, transfer.currency))}</td>"
            f"<td>{escape(transfer.status)}</td><td>{choices}</td></tr>"
        )
    table = (
        "<table><tr><th>Reference</th><th>Amount</th><th>Status</th><th>Outcome</th></tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>No transfers yet.</p>"
    )
    how = (
        "Transfers stay pending until you choose an outcome here; each choice sends the signed "
        "<code>transfer.*</code> webhook."
        if payout_outcome == "manual"
        else f"Transfers finish on their own as <code>{escape(payout_outcome)}</code> (start the sandbox with "
        "<code>--payout-outcome manual</code> to choose each one here)."
    )
    return _document("Paystack sandbox transfers", f'<h1>Transfers</h1>\n<p class="note">{how}</p>\n{table}')
