"""`python -m app.sandbox`: serve the Paystack sandbox on loopback until SIGTERM or SIGINT.

Example:
    python -m app.sandbox --port 8100 --service-url http://127.0.0.1:8000 --secret-key sk_test_local
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from app.config import APP_ENVIRONMENTS, load_settings
from app.sandbox.emulation import PAYOUT_OUTCOMES, PaystackSandbox


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.sandbox", description="A local Paystack sandbox on 127.0.0.1 (never in production)."
    )
    parser.add_argument("--port", type=int, default=0, help="loopback port to serve on (default: a free one)")
    parser.add_argument(
        "--service-url", default=None, help="the service's base URL, where webhooks go (default: send none)"
    )
    parser.add_argument(
        "--secret-key", required=True, help="the PAYSTACK_SECRET_KEY the service uses; webhooks are signed with it"
    )
    parser.add_argument(
        "--payout-outcome",
        choices=PAYOUT_OUTCOMES,
        default="success",
        help="how transfers finish; manual: choose each one at /sandbox/transfers (default: success)",
    )
    parser.add_argument(
        "--payout-delay", type=float, default=1.0, help="seconds before a transfer finishes on its own (default: 1)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app_env = load_settings().app_env
    # The sandbox fakes money arriving: a production process must never be able to point at one.
    if app_env not in APP_ENVIRONMENTS or app_env == "production":
        print(f"the Paystack sandbox refuses to start with APP_ENV={app_env}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s paystack-sandbox %(levelname)s %(message)s")
    # Blocked before the server's threads start, so they inherit the mask and the signals wait for the main
    # thread's `sigwait`: a Python handler would not run while the main thread sleeps if the kernel handed the
    # signal to another thread.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    sandbox = PaystackSandbox(
        secret_key=args.secret_key,
        port=args.port,
        service_url=args.service_url,
        payout_outcome=args.payout_outcome,
        payout_delay=args.payout_delay,
    )
    with sandbox:
        print(
            f"Paystack sandbox on {sandbox.base_url} (payouts: {args.payout_outcome}; "
            f"transfers: {sandbox.base_url}/sandbox/transfers)",
            flush=True,
        )
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
