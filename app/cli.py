"""The `wallet` command line: run, migrate and operate the service.

Every command but `up` finds the servers a running `wallet up` started (`app.lib.local_stack`) when
`DATABASE_URL`/`REDIS_URL` are not configured, and says in one line what it tried when nothing answers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from app.config import PROJECT_ROOT, UnsafeConfigurationError, get_settings
from app.lib import local_stack
from app.lib.local_stack import DATA_DIR

if TYPE_CHECKING:
    from app.lib.infra import Infrastructure


def _celery(*args: str) -> list[str]:
    # Celery prints banners outside logging; with JSON logs they would break one object per line.
    quiet = ["--quiet"] if get_settings().log.format == "json" else []
    return [sys.executable, "-m", "celery", "-A", "tasks", *quiet, *args]


def _with_log_level(args: argparse.Namespace) -> dict[str, str]:
    """The environment of a Celery process: our logging reads `LOG_LEVEL` (Celery's `--loglevel` is not used)."""
    return {**os.environ, "LOG_LEVEL": args.loglevel} if args.loglevel else dict(os.environ)


def _could_not(doing: str, exc: BaseException) -> int:
    """One line for an operator, naming the database tried and where its address came from; exit 2."""
    from app.lib.infra import masked_url, one_line

    reason = one_line(exc)
    database = masked_url(get_settings().database.url)
    print(
        f"error: could not {doing}: {reason} (PostgreSQL {database}, from {local_stack.where_from('DATABASE_URL')})",
        file=sys.stderr,
    )
    return 2


def cmd_migrate(_: argparse.Namespace) -> int:
    """Create the database if needed and apply every migration."""
    from app.lib.infra import create_database_if_missing
    from app.lib.migrations import upgrade

    url = get_settings().database.url
    try:
        create_database_if_missing(url)
        upgrade(url)
    except Exception as exc:  # noqa: BLE001 - an operator needs one line, not a traceback
        return _could_not("apply the migrations", exc)
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
    return subprocess.call([*_celery("worker"), *args.extra], env=_with_log_level(args))  # noqa: S603


def cmd_beat(args: argparse.Namespace) -> int:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    schedule = str(DATA_DIR / "celerybeat-schedule")
    return subprocess.call([*_celery("beat", "--schedule", schedule), *args.extra], env=_with_log_level(args))  # noqa: S603


def cmd_flower(args: argparse.Namespace) -> int:
    return subprocess.call([*_celery("flower", f"--port={args.port}", f"--address={args.address}"), *args.extra])  # noqa: S603


PASSES_ARGUMENTS_ON = {cmd_worker, cmd_beat, cmd_flower}
"""Commands whose other options go to Celery as they are (`wallet worker -c 1 -Q settlement`)."""


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
        return _could_not("check the ledger", exc)


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
        return _could_not("read the review queue", exc)
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
        return _could_not(f"resolve {args.reference}", exc)
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
        _could_not("mint a token", exc)
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


def _start_sandbox(args: argparse.Namespace, api_url: str) -> tuple[list[str], dict[str, str]]:
    """The Paystack sandbox's command and the settings that point the service at it.

    Only outside production and without Paystack keys: a configured key means the operator wants Paystack
    (its test mode, say), and production refuses a local Paystack address anyway (`check_safe_to_start`).
    """
    from app.lib.infra import free_port
    from app.sandbox import command_line

    port = free_port()
    key = f"sk_test_sandbox_{secrets.token_hex(20)}"
    command = command_line(port, api_url, key, "--payout-outcome", args.payout_outcome)
    settings = {
        "PAYSTACK_BASE_URL": f"http://127.0.0.1:{port}",
        "PAYSTACK_SECRET_KEY": key,
        "PAYSTACK_WEBHOOK_SECRET": key,
    }
    return command, settings


@dataclass
class _Plan:
    """What `wallet up` starts, and the settings that point the service at its servers."""

    api_url: str
    commands: list[list[str]]
    service_settings: dict[str, str]
    sandbox_url: str = ""


def _plan(args: argparse.Namespace, infra: Infrastructure) -> _Plan:
    settings = get_settings()
    plan = _Plan(
        api_url=f"http://{args.host}:{args.port}",
        commands=[
            [sys.executable, "-m", "app.cli", "api", "--host", args.host, "--port", str(args.port)],
            _celery("worker", "--concurrency", str(args.concurrency)),
            _celery("beat", "--schedule", str(DATA_DIR / "celerybeat-schedule")),
        ],
        service_settings={"DATABASE_URL": infra.database_url, "REDIS_URL": infra.redis_url},
    )
    if not settings.is_production and not settings.paystack.secret_key and not args.no_sandbox:
        sandbox_command, sandbox_settings = _start_sandbox(args, plan.api_url)
        plan.commands.insert(0, sandbox_command)
        plan.service_settings.update(sandbox_settings)
        plan.sandbox_url = sandbox_settings["PAYSTACK_BASE_URL"]
    if args.flower:
        plan.commands.append(_celery("flower", f"--port={args.flower_port}", "--address=127.0.0.1"))
    return plan


def cmd_up(args: argparse.Namespace) -> int:
    """Everything for local use: database, broker, migrations, API, worker and beat (and the Paystack sandbox
    when no Paystack key is configured); Ctrl-C stops it all and leaves no process behind."""
    from app.lib.infra import masked_url, one_line, resolve_infrastructure

    try:
        get_settings().check_safe_to_start()
    except UnsafeConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from app.sandbox import PAYOUT_OUTCOMES

    if args.payout_outcome not in PAYOUT_OUTCOMES:
        print(f"error: --payout-outcome must be one of {', '.join(PAYOUT_OUTCOMES)}", file=sys.stderr)
        return 2
    already = local_stack.running()
    if already is not None:
        print(f"error: `wallet up` is already running (pid {already.pid}, {already.api_url})", file=sys.stderr)
        return 2
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    try:
        infra = resolve_infrastructure(DATA_DIR)
    except Exception as exc:  # noqa: BLE001 - one line: what was tried and how to fix it
        print(f"error: could not start PostgreSQL and Redis: {one_line(exc)}", file=sys.stderr)
        return 2
    # Where, not with what: a configured URL may carry passwords that do not belong on a terminal or in logs.
    print(f"PostgreSQL ({infra.origin['database']}): {masked_url(infra.database_url)}")
    print(f"Redis ({infra.origin['redis']}): {masked_url(infra.redis_url)}")
    return _run_until_stopped(args, infra, _plan(args, infra))


def _run_until_stopped(args: argparse.Namespace, infra: Infrastructure, plan: _Plan) -> int:
    from app.lib.infra import one_line, port_open
    from app.lib.migrations import upgrade

    processes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        try:
            upgrade(infra.database_url)
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            print(f"error: could not apply the migrations: {one_line(exc)}", file=sys.stderr)
            return 2
        print("migrations applied")
        if port_open(args.host, args.port):
            print(f"error: {args.host}:{args.port} is already in use; choose another with --port", file=sys.stderr)
            return 2
        env = {**os.environ, **plan.service_settings}
        processes = [
            subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, start_new_session=True)  # noqa: S603
            for command in plan.commands
        ]
        if not _wait_for_health(f"{plan.api_url}/health", processes):
            print("the service did not become healthy; stopping", file=sys.stderr)
            return 1
        local_stack.announce(
            local_stack.RunningStack(pid=os.getpid(), api_url=plan.api_url, settings=plan.service_settings)
        )
        print(f"\nWallet service is up.\n  API:  {plan.api_url}\n  Docs: {plan.api_url}/docs")
        if plan.sandbox_url:
            print(f"  Paystack sandbox: {plan.sandbox_url} (checkout pages; payouts end {args.payout_outcome})")
        if args.flower:
            print(f"  Flower: http://127.0.0.1:{args.flower_port}")
        print("Other `wallet` commands in another shell use these servers. Press Ctrl-C to stop.\n", flush=True)
        while not stopping:
            if any(p.poll() is not None for p in processes):
                print("a process exited; stopping everything", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        local_stack.withdraw()
        _stop_all(processes)
        infra.stop()
        print("stopped")


def cmd_doctor(_: argparse.Namespace) -> int:
    """Check configuration and every dependency; say what is wrong and how to fix it."""
    from app import doctor

    return doctor.main()


COMMAND_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Try it and run it",
        (
            ("up", "everything locally: PostgreSQL, Redis, migrations, API, worker, beat, Paystack sandbox"),
            ("api", "the HTTP API (uvicorn)"),
            ("worker", "a Celery worker (other options go to celery: -c 4 -Q settlement)"),
            ("beat", "Celery beat, the sweeps' clock (other options go to celery)"),
            ("flower", "Flower, Celery's monitor (other options go to celery, e.g. --basic-auth=u:p)"),
        ),
    ),
    (
        "Set up and check",
        (
            ("migrate", "create the database if needed and apply every migration"),
            ("doctor", "check configuration, database, migrations, Redis, Paystack; say what to fix"),
            ("token", "mint a JWT for a local user (created with a wallet if new); refused in production"),
        ),
    ),
    (
        "Operate",
        (
            ("ledger", "ledger check: verify the ledger's invariants (non-zero exit on any violation)"),
            ("review", "review list / review resolve: what the system will not guess, for an operator"),
            ("bench", "benchmark the whole stack against pgbench and a minimal program (writes bench/results/)"),
        ),
    ),
)


def _grouped_commands() -> str:
    lines = []
    for title, commands in COMMAND_GROUPS:
        lines.append(f"{title}:")
        lines.extend(f"  {name:<9} {summary}" for name, summary in commands)
        lines.append("")
    lines.append("`wallet <command> --help` tells more. Settings: environment variables or .env (see .env.sample).")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wallet",
        usage="wallet <command> [options]",
        description="The wallet service's command line.",
        epilog=_grouped_commands(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Listed by group in the epilog, so the subcommands are added without `help=` (argparse lists only those).
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>", help=argparse.SUPPRESS)
    summary = {name: text for _, group in COMMAND_GROUPS for name, text in group}

    def command(name: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, description=summary[name])

    up = command("up")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--concurrency", type=int, default=2, help="Celery worker threads")
    up.add_argument("--flower", action="store_true", help="also start Flower")
    up.add_argument("--flower-port", type=int, default=5555)
    up.add_argument(
        "--payout-outcome",
        default="success",
        help="how the Paystack sandbox ends withdrawals' payouts: success, failed, reversed or manual (choose each "
        "at /sandbox/transfers)",
    )
    up.add_argument("--no-sandbox", action="store_true", help="do not run the Paystack sandbox")
    up.set_defaults(handler=cmd_up)

    command("migrate").set_defaults(handler=cmd_migrate)
    command("doctor").set_defaults(handler=cmd_doctor)

    api = command("api")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int)
    api.set_defaults(handler=cmd_api)

    for name, handler in (("worker", cmd_worker), ("beat", cmd_beat)):
        sub = command(name)
        sub.add_argument("--loglevel", help="LOG_LEVEL for this process (DEBUG, INFO, WARNING, ...)")
        sub.set_defaults(handler=handler)

    flower = command("flower")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(handler=cmd_flower)

    token = command("token")
    token.add_argument("--email", required=True, help="the user's e-mail address")
    token.add_argument("--name", help="the user's display name, for a new user")
    token.add_argument("--json", action="store_true", help="print token, user and wallet number as JSON on stdout")
    token.set_defaults(handler=cmd_token)

    ledger = command("ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_commands.add_parser(
        "check", help="verify the ledger's invariants (non-zero exit on any violation)"
    ).set_defaults(handler=cmd_ledger_check)

    review = command("review")
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

    bench = command("bench")
    with contextlib.suppress(ImportError):  # an installed wheel has no `bench/`; cmd_bench says so
        importlib.import_module("bench").add_arguments(bench)
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.handler not in PASSES_ARGUMENTS_ON:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if args.handler is not cmd_up:
        local_stack.adopt()
    try:
        return int(args.handler(args))
    except UnsafeConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
