"""Benchmark-only profiling hook: cProfile in every process started with this directory on `PYTHONPATH`.

`wallet bench` puts this directory first on the `PYTHONPATH` of the API and worker it profiles and sets
`WALLET_BENCH_PROFILE_DIR`; Python imports `sitecustomize` at start-up, before uvicorn or Celery, so no
application code changes. Without that variable this module does nothing.

Each process (uvicorn's spawned workers and Celery's forked pool children included) profiles, in thread CPU
time, its main thread and every thread it starts (the API publishes to the broker from a thread pool). A
small control thread watches `<dir>/control`: `reset` clears every profile of the process (so start-up and
warm-up are left out), `dump <label>` writes `<role>-<pid>-<thread>-<label>.prof` (pstats format). Commands,
not a periodic dump: turning a large profile into pstats costs real CPU, and Celery's pool children leave
through `os._exit`, so `atexit` cannot be relied on to write anything.
"""

from __future__ import annotations

import os

_DIRECTORY = os.environ.get("WALLET_BENCH_PROFILE_DIR")
CONTROL_THREAD = "bench-profile-control"


def _install(directory: str) -> None:  # noqa: PLR0915 - one self-contained installer, closures and all
    import cProfile
    import json
    import marshal
    import sys
    import threading
    import time

    role = os.environ.get("WALLET_BENCH_PROFILE_ROLE", "process")
    control = os.path.join(directory, "control")
    profiles: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def start_profile(thread_name: str) -> None:
        # CPU time of the thread, not wall time: waiting for I/O, for the GIL or for a core on a crowded
        # machine costs nothing, so the profile says where the CPU goes.
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append((os.path.join(directory, f"{role}-{os.getpid()}-{thread_name}.prof"), profile))
        profile.enable()

    def reset() -> None:
        with lock:
            for _, profile in profiles:
                profile.clear()

    def dump(label: str) -> None:
        with lock:
            current = list(profiles)
        for path, profile in current:
            target = path.removesuffix(".prof") + f"-{label}.prof"
            try:
                profile.snapshot_stats()
                with open(target + ".tmp", "wb") as out:
                    marshal.dump(profile.stats, out)  # the format pstats.Stats reads
                os.replace(target + ".tmp", target)
            except Exception:  # noqa: BLE001, S112 - a failed dump must never break the profiled process
                continue

    def obey_control_file() -> None:
        seen = None
        while True:
            time.sleep(0.1)
            try:
                stamp = os.stat(control).st_mtime_ns
                if stamp == seen:
                    continue
                seen = stamp
                with open(control) as commands:
                    command = commands.read().split()
            except OSError:
                continue
            if command[:1] == ["reset"]:
                reset()
            elif command[:1] == ["dump"] and len(command) == 2:
                dump(command[1])

    def begin() -> None:
        with open(os.path.join(directory, f"{role}-{os.getpid()}.json"), "w") as out:
            json.dump({"pid": os.getpid(), "ppid": os.getppid(), "role": role, "argv": sys.argv}, out)
        start_profile("main")
        threading.Thread(target=obey_control_file, name=CONTROL_THREAD, daemon=True).start()

    def thread_started(*_: object) -> None:
        # Called on a new thread's first event: hand the thread to a cProfile of its own.
        if threading.current_thread().name == CONTROL_THREAD:
            sys.setprofile(None)
            return
        start_profile(threading.current_thread().name.replace("/", "_").replace(" ", "_"))

    def after_fork_in_child() -> None:
        # The parent's profiler came along with the forked main thread: stop it, start afresh (with a new
        # lock: another thread of the parent may have held the old one at the fork).
        nonlocal lock
        lock = threading.Lock()
        with lock:
            inherited = list(profiles)
            profiles.clear()
        for _, profile in inherited:
            profile.disable()
        begin()

    threading.setprofile(thread_started)
    os.register_at_fork(after_in_child=after_fork_in_child)
    begin()


if _DIRECTORY:
    _install(_DIRECTORY)
