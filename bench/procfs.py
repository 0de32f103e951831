"""What the benchmark reads from `/proc`: process trees, their memory and CPU, and the machine.

No psutil: `/proc/<pid>/stat` (parent, CPU ticks), `/proc/<pid>/status` (VmRSS, VmHWM), `/proc/stat`,
`/proc/meminfo` and `/proc/cpuinfo` are all the benchmark needs, and they are cheap to read.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of `/proc/<pid>/stat` after the command name (which may contain spaces and parentheses)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def command_name(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


_children_cache: tuple[float, dict[int, list[int]]] = (0.0, {})


def _children() -> dict[int, list[int]]:
    """Parent → children of every process, rebuilt at most every 0.2 s (one /proc scan serves all groups)."""
    global _children_cache  # noqa: PLW0603 - a tiny cache shared by the sampler and the snapshots
    built, children = _children_cache
    if time.monotonic() - built < 0.2:
        return children
    children = {}
    for pid in all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    _children_cache = (time.monotonic(), children)
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive right now."""
    children = _children()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if (PROC / str(pid)).exists():
            tree.append(pid)
            todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0 once it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    """A `VmXxx` line of `/proc/<pid>/status`, in KiB (0 when the process or the line is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_named(name: str) -> list[int]:
    return [pid for pid in all_pids() if command_name(pid) == name]


def machine_cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from the first line of `/proc/stat`."""
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return float(total - idle), float(total)


def machine() -> dict[str, object]:
    """Cores, memory, CPU model and the rest of what a reader needs to compare figures across machines."""
    model = ""
    mhz = ""
    for line in (PROC / "cpuinfo").read_text().splitlines():
        if line.startswith("model name") and not model:
            model = line.partition(":")[2].strip()
        elif line.startswith("cpu MHz") and not mhz:
            mhz = line.partition(":")[2].strip()
    mem_kib = 0
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu_model": model,
        "cpu_mhz": float(mhz) if mhz else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class Group:
    """A named set of processes whose CPU and memory the benchmark reports together."""

    name: str
    find: Callable[[], Iterable[int]]
    """The group's pids right now."""

    def pids(self) -> list[int]:
        return list(self.find())


@dataclass
class CpuSnapshot:
    at: float
    per_pid: dict[str, dict[int, float]]
    machine_busy: float
    machine_total: float


def snapshot_cpu(groups: list[Group]) -> CpuSnapshot:
    busy, total = machine_cpu_busy()
    return CpuSnapshot(
        at=time.monotonic(),
        per_pid={g.name: {pid: cpu_seconds(pid) for pid in g.pids()} for g in groups},
        machine_busy=busy,
        machine_total=total,
    )


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, object]:
    """CPU used by each group between two snapshots, in cores (CPU seconds per wall second).

    A process that appeared in between counts from zero; one that vanished is not counted (its last
    moments are lost, which only matters for short-lived helpers).
    """
    wall = max(after.at - before.at, 1e-9)
    cores: dict[str, float] = {}
    for name, now in after.per_pid.items():
        then = before.per_pid.get(name, {})
        used = sum(max(cpu - then.get(pid, 0.0), 0.0) for pid, cpu in now.items())
        cores[name] = round(used / wall, 3)
    total = after.machine_total - before.machine_total
    machine_busy = (after.machine_busy - before.machine_busy) / total if total else 0.0
    busy_cores = machine_busy * (os.cpu_count() or 1)
    # What the rest of the machine used (another test suite, say), so a reader can tell a quiet run from a
    # crowded one. `postgres_all` (every PostgreSQL process) contains `postgres` (our database's backends).
    accounted = sum(value for name, value in cores.items() if name != "postgres" or "postgres_all" not in cores)
    return {
        "wall_s": round(wall, 2),
        "cores_used": cores,
        "other_processes_cores": round(max(busy_cores - accounted, 0.0), 3),
        "machine_busy_fraction": round(machine_busy, 3),
    }


@dataclass
class MemorySampler:
    """Samples the summed RSS of each group every `interval` seconds on a thread; keeps per-window peaks."""

    groups: list[Group]
    interval: float = 0.5
    _peaks: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._peaks.clear()

    def peaks_mib(self) -> dict[str, float]:
        """Peak summed RSS of each group since the last `reset()`, in MiB."""
        with self._lock:
            return {name: round(kib / 1024, 1) for name, kib in self._peaks.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sample = {g.name: sum(status_kib(pid, "VmRSS") for pid in g.pids()) for g in self.groups}
            with self._lock:
                for name, kib in sample.items():
                    self._peaks[name] = max(self._peaks.get(name, 0), kib)


def high_water_mib(pids: list[int]) -> float:
    """Sum of each process's own peak RSS (VmHWM): an upper bound of the tree's peak, in MiB."""
    return round(sum(status_kib(pid, "VmHWM") for pid in pids) / 1024, 1)
