"""The `wallet` command line: run, migrate and operate the service."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.config import PROJECT_ROOT, UnsafeConfigurationError, get_settings

DATA_DIR = Path(os.environ.get("WALLET_DATA_DIR", PROJECT_ROOT / ".wallet-data"))


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tasks", *args]


def cmd_migrate(_: argparse.Namespace) -> int:
    """Create the database if needed and apply every migration."""
    from app.lib.infra import create_database_if_missing
    from app.lib.migrations import upgrade

    url = get_settings().database.url
    create_database_if_missing(url)
    upgrade(url)
    print("migrations applied")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    settings.check_safe_to_start()
    uvicorn.run(
        "app.main:app",
        host=args.host or settings.http.host,
        port=args.port or settings.http.port,
        workers=args.workers or settings.http.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    return subprocess.call([*_celery("worker", "--loglevel", args.loglevel), *args.extra])  # noqa: S603


def cmd_beat(args: argparse.Namespace) -> int:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    schedule = str(DATA_DIR / "celerybeat-schedule")
    return subprocess.call([*_celery("beat", "--loglevel", args.loglevel, "--schedule", schedule), *args.extra])  # noqa: S603


def cmd_flower(args: argparse.Namespace) -> int:
    return subprocess.call([*_celery("flower", f"--port={args.port}", f"--address={args.address}"), *args.extra])  # noqa: S603


def cmd_ledger_check(_: argparse.Namespace) -> int:
    """Verify the ledger's invariants: one line per violation and exit 1, or a summary and exit 0."""
    import asyncio

    from app.domain.wallets.checks import check_ledger
    from app.lib.db import session_maker

    async def check() -> int:
        engine = get_settings().database.create_engine()
        try:
            async with session_maker(engine)() as session:
                report = await check_ledger(session)
        finally:
            await engine.dispose()
        for violation in report.violations:
            print(f"VIOLATION: {violation}")
        print(report.summary())
        return 0 if report.ok else 1

    try:
        return asyncio.run(check())
    except Exception as exc:  # noqa: BLE001 - an operator needs one line, not a traceback
        print(f"error: could not check the ledger: {exc}", file=sys.stderr)
        return 2


def _operator_name() -> str:
    """Who runs this command, for the audit log: `$WALLET_OPERATOR`, else the login name and host."""
    import getpass
    import socket

    named = os.environ.get("WALLET_OPERATOR", "").strip()
    if named:
        return named[:100]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:100]


def cmd_review_list(args: argparse.Namespace) -> int:
    """The operator review queue: a table, or one JSON array with `--json`."""
    import asyncio
    import json

    from app.domain.review.service import ReviewQueue
    from app.lib.db import session_maker

    async def load() -> list[dict[str, object]]:
        engine = get_settings().database.create_engine()
        try:
            async with session_maker(engine)() as session:
                items = await ReviewQueue(session).items(include_resolved=args.all)
                return [
                    {
                        "reference": item.reference,
                        "kind": item.kind,
                        "status": item.status,
                        "reason": item.reason,
                        "source": item.source,
                        "details": item.details,
                        "created_at": item.created_at.isoformat(),
                        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
                        "resolved_by": item.resolved_by,
                        "resolution_note": item.resolution_note,
                    }
                    for item in items
                ]
        finally:
            await engine.dispose()

    try:
        items = asyncio.run(load())
    except Exception as exc:  # noqa: BLE001 - an operator needs one line, not a traceback
        print(f"error: could not read the review queue: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("the review queue is empty" if not args.all else "no review items")
        return 0
    for item in items:
        print(f"{str(item['created_at'])[:19]}  {item['status']:<8}  {item['kind']:<22}  {item['reference']}")
        print(f"    {item['reason']}")
        if item["resolved_at"]:
            print(f"    resolved by {item['resolved_by']} at {item['resolved_at']}: {item['resolution_note']}")
    return 0


def cmd_review_resolve(args: argparse.Namespace) -> int:
    """Close the open review items of a reference, recording who, when and why. Moves no money."""
    import asyncio

    from app.domain.review.service import Resolution, ReviewQueue
    from app.lib.db import session_maker
    from app.lib.uow import UnitOfWork

    operator = _operator_name()

    async def resolve() -> Resolution:
        engine = get_settings().database.create_engine()
        try:
            async with session_maker(engine)() as session:
                uow = UnitOfWork(session)
                return await uow.run(
                    lambda: ReviewQueue(session).resolve(args.reference, note=args.note, operator=operator)
                )
        finally:
            await engine.dispose()

    try:
        resolution = asyncio.run(resolve())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - an operator needs one line, not a traceback
        print(f"error: could not resolve {args.reference}: {exc}", file=sys.stderr)
        return 2
    if not resolution.resolved:
        print(f"error: no open review item has the reference {args.reference}", file=sys.stderr)
        return 1
    print(f"resolved {resolution.resolved} item(s) of {args.reference} as {operator}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark the whole stack against pgbench (`bench/`, in a source checkout; see the README)."""
    try:
        runner = importlib.import_module("bench.runner")
    except ImportError as exc:
        print(f"error: wallet bench needs the source checkout's bench/ and tests/ packages ({exc})", file=sys.stderr)
        return 2
    return int(runner.main(args))


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a JWT for a local user, creating the user and their wallet on first use. Refused in production.

    Prints the token alone on stdout (so `TOKEN=$(wallet token --email ...)` works) and the user and wallet
    number on stderr; `--json` prints all of it as one JSON object on stdout instead.
    """
    settings = get_settings()
    if settings.is_production:
        print(
            "error: `wallet token` mints credentials without signing in; it is refused when APP_ENV=production",
            file=sys.stderr,
        )
        return 2
    email = args.email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or len(email) > 320 or any(c.isspace() for c in email):
        print(f"error: {args.email!r} is not an e-mail address", file=sys.stderr)
        return 2

    import asyncio
    import json

    from app.domain.auth.sign_in import sign_in_locally
    from app.lib.db import session_maker
    from app.lib.uow import UnitOfWork

    async def mint() -> dict[str, object]:
        engine = settings.database.create_engine()
        try:
            async with session_maker(engine)() as session:
                signed_in = await sign_in_locally(UnitOfWork(session), settings, email=email, name=args.name)
        finally:
            await engine.dispose()
        return {
            "access_token": signed_in.token.access_token,
            "token_type": "bearer",
            "expires_in": signed_in.token.expires_in,
            "user_id": str(signed_in.user.id),
            "email": signed_in.user.email,
            "wallet_number": signed_in.wallet.number,
        }

    try:
        minted = asyncio.run(mint())
    except Exception as exc:  # noqa: BLE001 - an operator needs one line, not a traceback
        print(f"error: could not mint a token: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(minted))
    else:
        print(minted["access_token"])
        print(
            f"user {minted['user_id']} <{minted['email']}>, wallet {minted['wallet_number']}, "
            f"token valid for {minted['expires_in']} s",
            file=sys.stderr,
        )
    return 0


def _wait_for_health(url: str, processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def cmd_up(args: argparse.Namespace) -> int:
    """Everything for local use: database, broker, migrations, API, worker and beat; Ctrl-C stops it all."""
    from app.lib.infra import resolve_infrastructure
    from app.lib.migrations import upgrade

    try:
        get_settings().check_safe_to_start()
    except UnsafeConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    infra = resolve_infrastructure(DATA_DIR)
    from sqlalchemy.engine import make_url

    # Where, not with what: a configured URL may carry passwords that do not belong on a terminal or in logs.
    print(f"PostgreSQL ({infra.origin['database']}): {make_url(infra.database_url).render_as_string()}")
    print(f"Redis ({infra.origin['redis']}): {make_url(infra.redis_url).render_as_string()}")
    env = {**os.environ, "DATABASE_URL": infra.database_url, "REDIS_URL": infra.redis_url}
    processes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        upgrade(infra.database_url)
        print("migrations applied")
        host, port = args.host, args.port
        commands = [
            [sys.executable, "-m", "app.cli", "api", "--host", host, "--port", str(port)],
            _celery("worker", "--loglevel", "INFO", "--concurrency", str(args.concurrency)),
            _celery("beat", "--loglevel", "INFO", "--schedule", str(DATA_DIR / "celerybeat-schedule")),
        ]
        if args.flower:
            commands.append(_celery("flower", f"--port={args.flower_port}", "--address=127.0.0.1"))
        processes = [
            subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, start_new_session=True)  # noqa: S603
            for command in commands
        ]
        base = f"http://{host}:{port}"
        if not _wait_for_health(f"{base}/health", processes):
            print("the service did not become healthy; stopping", file=sys.stderr)
            return 1
        print(f"\nWallet service is up.\n  API:  {base}\n  Docs: {base}/docs")
        if args.flower:
            print(f"  Flower: http://127.0.0.1:{args.flower_port}")
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stopping:
            if any(p.poll() is not None for p in processes):
                print("a process exited; stopping everything", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop_all(processes)
        infra.stop()
        print("stopped")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run everything locally (embedded PostgreSQL and Redis if none)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    up.add_argument("--flower", action="store_true", help="also start Flower")
    up.add_argument("--flower-port", type=int, default=5555)
    up.set_defaults(handler=cmd_up)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)

    api = commands.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int)
    api.set_defaults(handler=cmd_api)

    for name, handler in (("worker", cmd_worker), ("beat", cmd_beat)):
        sub = commands.add_parser(name, help=f"run a Celery {name}")
        sub.add_argument("--loglevel", default="INFO")
        sub.add_argument("extra", nargs=argparse.REMAINDER, help="more arguments for celery")
        sub.set_defaults(handler=handler)

    flower = commands.add_parser("flower", help="run Flower, Celery's monitor")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="127.0.0.1")
    flower.add_argument("extra", nargs=argparse.REMAINDER)
    flower.set_defaults(handler=cmd_flower)

    token = commands.add_parser(
        "token", help="mint a JWT for a local user (created with a wallet if new); refused in production"
    )
    token.add_argument("--email", required=True, help="the user's e-mail address")
    token.add_argument("--name", help="the user's display name, for a new user")
    token.add_argument("--json", action="store_true", help="print token, user and wallet number as JSON on stdout")
    token.set_defaults(handler=cmd_token)

    ledger = commands.add_parser("ledger", help="operate the ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_commands.add_parser(
        "check", help="verify the ledger's invariants (non-zero exit on any violation)"
    ).set_defaults(handler=cmd_ledger_check)

    review = commands.add_parser("review", help="the operator review queue (what the system will not guess)")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    review_list = review_commands.add_parser("list", help="list the open items (a table; --json for machines)")
    review_list.add_argument("--json", action="store_true", help="one JSON array on stdout")
    review_list.add_argument("--all", action="store_true", help="resolved items too")
    review_list.set_defaults(handler=cmd_review_list)
    review_resolve = review_commands.add_parser(
        "resolve", help="close the open items of a reference (audited: who, when, why; moves no money)"
    )
    review_resolve.add_argument("reference", help="the deposit or withdrawal reference (or event id) the items name")
    review_resolve.add_argument("--note", required=True, help="why it is resolved, for the audit log")
    review_resolve.set_defaults(handler=cmd_review_resolve)

    bench = commands.add_parser("bench", help="benchmark the whole stack against pgbench (writes bench/results/)")
    with contextlib.suppress(ImportError):  # an installed wheel has no `bench/`; cmd_bench says so
        importlib.import_module("bench").add_arguments(bench)
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except UnsafeConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
