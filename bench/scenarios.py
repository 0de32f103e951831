"""Running a load against a target and measuring it: the service's scenarios and the floor's rounds.

A load is a few generator processes (`bench/loadgen.py`) started from an agreed instant; over the measured
window the CPU of every process tree that matters is read from `/proc` (the target's own processes, the
PostgreSQL backends of its database, the other target idling, Redis, the generator) and their peak RSS sampled.
A service scenario is then drained (every transfer settled, the queues empty) so the next starts clean, and
its settlement read from the database; a floor round needs no drain (its 200 means committed).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench import procfs
from bench.floor import committed_between
from bench.loadgen import READ, TRANSFER, WEBHOOK, LoadResult, LoadSpec, process_main

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import asyncpg
    import redis

    from bench.params import Parameters
    from bench.stack import Target

QUEUES = ("settlement", "webhooks", "webhooks_out", "maintenance")
"""Celery's queues (celeryconfig.py); kombu keeps each as a Redis list of that name."""


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank), mean and max, in the values' unit, rounded to 0.01."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(math.ceil(q * len(ordered)) - 1, 0))], 2)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "mean": round(sum(ordered) / len(ordered), 2),
        "max": round(ordered[-1], 2),
    }


async def sleep_until(wall: float) -> None:
    await asyncio.sleep(max(wall - time.time(), 0))


async def poll(check: Callable[[], Awaitable[bool]], timeout_s: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _is_ok(kind: str, status: str) -> bool:
    return status in ({"200", "202"} if kind == TRANSFER else {"200"})


def one_line(name: str, report: dict[str, Any]) -> str:
    latency = report["accept_latency_ms"]
    parts = [f"{report['accepted_per_s']}/s accepted", f"p50/p99 {latency['p50']}/{latency['p99']} ms"]
    if "settled_per_s" in report:
        parts.append(f"{report['settled_per_s']}/s settled")
    if "stored_per_s" in report:
        parts.append(f"{report['stored_per_s']}/s stored, {report['processed_per_s']}/s processed")
    if "cpu_ms_per_settled" in report:
        parts.append(f"{report['cpu_ms_per_settled']['total']} ms CPU each")
    if report["errors_by_status"]:
        parts.append(f"errors {report['errors_by_status']}")
    parts.append(f"loadgen {report['loadgen']['cores']} cores")
    return f"{name}: " + ", ".join(parts)


class Scenarios:
    """The measuring side of a run: building loads, running them against a target, reading the outcome."""

    def __init__(
        self,
        params: Parameters,
        stamp: str,
        db: asyncpg.Connection,
        *,
        redis_client: redis.Redis,
        redis_pid: int | None,
        notes: list[str],
    ) -> None:
        self.params = params
        self.stamp = stamp
        self.db = db
        """The benchmark's own connection to the service's database (also used for CREATE/DROP DATABASE)."""
        self.redis = redis_client
        self.redis_pid = redis_pid
        self.notes = notes
        self.targets: dict[str, Target] = {}
        self.abandoned_events = 0
        """Webhook events left unprocessed when a drain gave up (their messages were dropped)."""
        self.current = "funding"
        """The scenario running, for notes."""

    @property
    def service(self) -> Target:
        return self.targets["service"]

    def stack_pids(self, *, besides: Target | None = None) -> list[int]:
        """Every target's processes but `besides`: the stack that idles while another is measured."""
        return [pid for target in self.targets.values() if target is not besides for pid in target.pids()]

    # -- building load -----------------------------------------------------------------------------------

    def spec(self, kind: str, wallets: tuple[tuple[str, str], ...], index: int, **extra: Any) -> LoadSpec:
        params = self.params
        connections = max(
            params.clients // params.loadgen_processes + (index < params.clients % params.loadgen_processes), 1
        )
        settings: dict[str, Any] = {
            "kind": kind,
            "host": "127.0.0.1",
            "port": self.service.port,
            "duration": params.duration_s,
            "warmup": params.warmup_s,
            "connections": connections,
            "wallets": wallets,
            "max_amount": params.max_transfer_amount,
            "seed": hash((self.stamp, kind, index)) & 0xFFFFFFFF,
        }
        return LoadSpec(**(settings | extra))

    def split(self, wallets: list[tuple[str, str]], rate: float | None = None, **extra: Any) -> list[LoadSpec]:
        """One spec per generator process, each acting as a disjoint share of the wallets."""
        n = self.params.loadgen_processes
        return [
            self.spec(
                TRANSFER if ("recipients" in extra or "hot_recipient" in extra) else READ,
                tuple(wallets[index::n]),
                index,
                rate=(rate / n) if rate else None,
                **extra,
            )
            for index in range(n)
        ]

    def uniform(self, wallets: list[tuple[str, str]], port: int, round_index: int = 0) -> list[LoadSpec]:
        """Random sender to random recipient among `wallets`, closed loop: the headline load, for either target."""
        numbers = tuple(number for _, number in wallets)
        return [
            replace(spec, port=port, seed=hash((self.stamp, port, round_index, index)) & 0xFFFFFFFF)
            for index, spec in enumerate(self.split(wallets, recipients=numbers))
        ]

    # -- one load ----------------------------------------------------------------------------------------

    async def load(
        self, specs: list[LoadSpec], target: Target, profile: tuple[Path, str] | None = None
    ) -> dict[str, Any]:
        """Start the generator processes, run them from an agreed instant, measure CPU and memory meanwhile.

        With `profile` (a control file and a label), the profiled processes clear their profiles when the
        measured window opens and dump them, labelled, when it closes (`bench/profiling/sitecustomize.py`).
        """
        context = multiprocessing.get_context("spawn")
        processes, pipes = [], []
        for index, spec in enumerate(specs):
            parent, child = context.Pipe()
            process = context.Process(target=process_main, args=(spec, index, child), daemon=True)
            process.start()
            child.close()
            processes.append(process)
            pipes.append(parent)
        try:
            for pipe in pipes:
                if not await asyncio.to_thread(pipe.poll, 60):
                    msg = "a load generator process did not start"
                    raise RuntimeError(msg)
                pipe.recv()
            start_at = time.time() + 0.3
            for pipe in pipes:
                pipe.send(start_at)
            window_from = start_at + specs[0].warmup
            window_to = window_from + specs[0].duration
            loadgen_pids = [p.pid for p in processes if p.pid is not None]
            backends: list[int] = []
            groups = [
                *target.groups,
                procfs.Group("postgres", lambda: backends),
                procfs.Group("postgres_all", lambda: procfs.pids_named("postgres")),
                procfs.Group("redis", lambda: [self.redis_pid] if self.redis_pid else []),
                procfs.Group("bench_and_standin", lambda: [os.getpid()]),
                procfs.Group("loadgen", lambda: loadgen_pids),
                procfs.Group("idle_stack", lambda: self.stack_pids(besides=target)),
            ]
            await sleep_until(window_from - 0.2)
            backends[:] = await self.backends_of(target.database)
            await sleep_until(window_from)
            if profile is not None:
                await asyncio.to_thread(profile[0].write_text, "reset")
            target.memory.reset()
            before = procfs.snapshot_cpu(groups)
            await sleep_until(window_to)
            if profile is not None:
                await asyncio.to_thread(profile[0].write_text, f"dump {profile[1]}")
            # A backend that a pool opened during the window counts from zero (it did not exist before).
            backends[:] = sorted(set(backends) | set(await self.backends_of(target.database)))
            after = procfs.snapshot_cpu(groups)
            memory = target.memory.peaks_mib()
            load_avg = load_average()
            results: list[LoadResult] = []
            for pipe in pipes:
                if not await asyncio.to_thread(pipe.poll, specs[0].timeout + 60):
                    msg = "a load generator process did not report"
                    raise RuntimeError(msg)
                results.append(pipe.recv())
        finally:
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
        target.check_alive()
        return {
            "results": results,
            "cpu": procfs.cpu_between(before, after),
            "memory": memory,
            "window": (window_from, window_to),
            "load_average": load_avg,
        }

    def load_report(
        self, kind: str, description: str, specs: list[LoadSpec], duration: float, load: dict[str, Any]
    ) -> dict[str, Any]:
        """What any load measured: acceptance, statuses, CPU per accepted request, memory, the generator."""
        results: list[LoadResult] = load["results"]
        latencies = [ms for result in results for ms in result.latencies_ms]
        statuses: dict[str, int] = {}
        for result in results:
            for status, count in result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        ok = sum(result.ok for result in results)
        cpu = load["cpu"]
        used = cpu["cores_used"]
        total_used = sum(used.values()) or 1e-9
        loadgen_cpu = sum(result.cpu_s for result in results)
        return {
            "description": description,
            "discipline": (
                f"open loop, {sum(s.rate or 0 for s in specs):.0f}/s"
                if specs[0].rate
                else f"closed loop, {sum(s.connections for s in specs)} connections"
            ),
            "duration_s": duration,
            "warmup_s": specs[0].warmup,
            "requests": sum(result.requests for result in results),
            "accepted": ok,
            "accepted_per_s": round(ok / duration, 1),
            "accept_latency_ms": percentiles(latencies),
            "statuses": dict(sorted(statuses.items())),
            "errors_by_status": {
                status: count for status, count in sorted(statuses.items()) if not _is_ok(kind, status)
            },
            "memory_peak_rss_mib": load["memory"],
            "cpu": cpu,
            "cpu_ms_per_accepted": {
                group: round(cores * duration * 1000 / ok, 3) if ok else None for group, cores in used.items()
            },
            "load_average": load["load_average"],
            "loadgen": {
                "processes": len(specs),
                "cpu_s_from_proc_self": round(loadgen_cpu, 2),
                "cores": round(loadgen_cpu / duration, 3),
                "share_of_cpu_used": round(used.get("loadgen", 0.0) / total_used, 3),
                "late_start_s": max(result.late_start_s for result in results),
                "connections_opened": sum(result.connections_opened for result in results),
                "max_in_flight": sum(result.max_in_flight for result in results),
            },
        }

    # -- the service -------------------------------------------------------------------------------------

    async def scenario(
        self,
        name: str,
        kind: str,
        description: str,
        specs: list[LoadSpec],
        *,
        duration: float,
        profile: tuple[Path, str] | None = None,
        drain_timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Run one of the service's scenarios, drain, and gather everything measured about it."""
        target = self.service
        specs = [replace(spec, duration=duration) for spec in specs]
        print(f"  scenario {name}: {description}", flush=True)
        self.current = name
        xacts_before = await self.db_transactions(target.database)
        load = await self.load(specs, target, profile)
        after_load = time.time()
        drain = await self.drain(drain_timeout_s)
        await asyncio.sleep(1.2)  # statistics reach pg_stat_database within a second of a transaction
        xacts = await self.db_transactions(target.database) - xacts_before
        window_from, window_to = load["window"]
        report = self.load_report(kind, description, specs, duration, load)
        report["memory_high_water_mib"] = {group.name: procfs.high_water_mib(group.pids()) for group in target.groups}
        warmup_requests = sum(r.warmup_requests for r in load["results"])
        report["db_transactions_per_accepted"] = round(xacts / max(report["accepted"] + warmup_requests, 1), 2)
        report |= drain
        if kind == TRANSFER:
            report |= await self.settlement(window_from, window_to)
            report |= await self.deliveries(window_from, window_to)
        if kind == WEBHOOK:
            report |= await self.webhooks(window_from, window_to, duration)
        report["seconds_after_load_to_drain"] = round(time.time() - after_load, 2)
        print(f"    {one_line(name, report)}", flush=True)
        return report

    def queue_lengths(self) -> dict[str, int]:
        return {queue: int(self.redis.llen(queue)) for queue in QUEUES}  # type: ignore[arg-type]

    async def drain(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait until no transfer is pending, no webhook event waits and the queues are empty.

        After `timeout_s` the queues are emptied instead, so the next scenario starts clean; the work left
        undone stays in the database (in production, beat would re-enqueue it).
        """
        target = self.service
        timeout_s = timeout_s or self.params.drain_timeout_s
        started = time.monotonic()
        backlog = self.queue_lengths()
        cpu_before = procfs.snapshot_cpu(target.groups)

        async def drained() -> bool:
            target.check_alive()
            pending = await self.db.fetchval("SELECT count(*) FROM transfers WHERE status = 'pending'")
            waiting = await self.db.fetchval("SELECT count(*) FROM webhook_events WHERE status = 'received'")
            undelivered = await self.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            return (
                pending == 0
                and waiting <= self.abandoned_events
                and undelivered == 0
                and not any(self.queue_lengths().values())
            )

        ok = await poll(drained, timeout_s=timeout_s, interval=0.1)
        cpu = procfs.cpu_between(cpu_before, procfs.snapshot_cpu(target.groups))
        if not ok:
            left = self.queue_lengths()
            self.redis.delete(*QUEUES)
            self.abandoned_events = int(
                await self.db.fetchval("SELECT count(*) FROM webhook_events WHERE status = 'received'")
            )
            self.notes.append(
                f"{self.current}: drain stopped after {timeout_s}s with {left} still queued; the queues were emptied"
            )
        return {
            "queue_backlog_at_end": backlog,
            "drain_s": round(time.monotonic() - started, 2),
            "drained": ok,
            "drain_cpu_cores": cpu["cores_used"],
        }

    async def settlement(self, window_from: float, window_to: float) -> dict[str, Any]:
        row = await self.db.fetchrow(
            """
            SELECT count(*) AS created,
                   count(*) FILTER (WHERE status = 'success') AS settled,
                   count(DISTINCT settlement_journal_id) AS batches,
                   extract(epoch FROM min(created_at)) AS first_created,
                   extract(epoch FROM max(settled_at)) AS last_settled,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM settled_at - created_at)) AS latency,
                   avg(extract(epoch FROM settled_at - created_at)) AS mean,
                   max(extract(epoch FROM settled_at - created_at)) AS worst
            FROM transfers
            WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2)
            """,
            window_from,
            window_to,
        )
        created, settled = int(row["created"]), int(row["settled"])
        span = float(row["last_settled"] - row["first_created"]) if settled else 0.0
        p50, p95, p99 = (round(float(x) * 1000, 2) for x in row["latency"]) if settled else (None, None, None)
        return {
            "transfers_created_in_window": created,
            "settled": settled,
            "settled_per_s": round(settled / span, 1) if span > 0 else 0.0,
            "settle_span_s": round(span, 2),
            "settlement_batches": int(row["batches"]),
            "transfers_per_settlement_batch": round(settled / int(row["batches"]), 2) if row["batches"] else None,
            "settle_latency_ms": {
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "mean": round(float(row["mean"]) * 1000, 2) if settled else None,
                "max": round(float(row["worst"]) * 1000, 2) if settled else None,
            },
        }

    async def deliveries(self, window_from: float, window_to: float) -> dict[str, Any]:
        """The events of the window's transfers (`transfer.sent` and `transfer.received` of each transfer
        created in it) and their delivery to the subscribed endpoints."""
        row = await self.db.fetchrow(
            """
            SELECT count(DISTINCT e.id) AS events,
                   count(d.id) AS deliveries,
                   count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM d.delivered_at - e.created_at)) AS lag
            FROM transfers t JOIN wallet_events e ON e.subject = t.reference
                AND e.type IN ('transfer.sent', 'transfer.received')
            LEFT JOIN webhook_deliveries d ON d.event_id = e.id
            WHERE t.created_at >= to_timestamp($1) AND t.created_at < to_timestamp($2)
            """,
            window_from,
            window_to,
        )
        lag = [round(float(x) * 1000, 2) for x in row["lag"]] if row["delivered"] else [None, None, None]
        return {
            "events": int(row["events"]),
            "deliveries": int(row["deliveries"]),
            "delivered": int(row["delivered"]),
            "delivery_lag_ms": dict(zip(("p50", "p95", "p99"), lag, strict=True)),
        }

    async def webhooks(self, window_from: float, window_to: float, duration: float) -> dict[str, Any]:
        row = await self.db.fetchrow(
            """
            SELECT count(*) AS stored,
                   count(*) FILTER (WHERE status <> 'received') AS processed,
                   extract(epoch FROM min(created_at)) AS first_stored,
                   extract(epoch FROM max(processed_at)) AS last_processed
            FROM webhook_events
            WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2) AND event_type = 'charge.success'
            """,
            window_from,
            window_to,
        )
        stored, processed = int(row["stored"]), int(row["processed"])
        span = float(row["last_processed"] - row["first_stored"]) if processed else 0.0
        return {
            "stored_in_window": stored,
            "stored_per_s": round(stored / duration, 1),
            "processed": processed,
            "processed_per_s": round(processed / span, 1) if span > 0 else 0.0,
        }

    # -- the floor ---------------------------------------------------------------------------------------

    async def floor_round(
        self,
        round_index: int,
        wallets: list[tuple[str, str]],
        floor_db: asyncpg.Connection,
        target_name: str = "floor",
        description: str = "the floor: uniform transfers, closed loop, settled at commit",
    ) -> dict[str, Any]:
        """One measured window of a floor program under the headline load; its 200 is a committed transfer."""
        target = self.targets[target_name]
        name = f"{target_name.replace('_', ' ')} round {round_index + 1}"
        self.current = name
        print(f"  {name}: {description}", flush=True)
        duration = self.params.duration_s
        specs = self.uniform(wallets, target.port, round_index)
        load = await self.load(specs, target)
        report = self.load_report(TRANSFER, description, specs, duration, load)
        committed = await committed_between(floor_db, *load["window"])
        used = report["cpu"]["cores_used"]
        per = {group: cores * duration * 1000 / committed if committed else None for group, cores in used.items()}
        app_ms, postgres_ms = per.get("floor"), per.get("postgres")
        report |= {
            "round": round_index + 1,
            "committed_in_window": committed,
            "settled_per_s": round(committed / duration, 1),
            "cpu_ms_per_settled": {
                "app": round(app_ms, 3) if app_ms is not None else None,
                "postgres": round(postgres_ms, 3) if postgres_ms is not None else None,
                "total": round((app_ms or 0.0) + (postgres_ms or 0.0), 3) if committed else None,
            },
        }
        print(f"    {one_line(name, report)}", flush=True)
        return report

    # -- the database ------------------------------------------------------------------------------------

    async def backends_of(self, database: str) -> list[int]:
        """PostgreSQL backend pids serving `database` (their CPU is the database's share of the work)."""
        rows = await self.db.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
        return [int(row["pid"]) for row in rows]

    async def db_transactions(self, database: str) -> int:
        value = await self.db.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
        )
        return int(value or 0)
