"""Helpers for the benchmark scripts: timing and peak memory of a function in a fresh process."""

import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from typing import Any


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the process
    return r.ru_utime + r.ru_stime


def _child(fn: Callable, args: tuple, q: mp.Queue) -> None:
    start = _rss_kib()
    c0 = _cpu_s()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    q.put((dt, (peak - start) * 1024, out, cpu))


def measure(fn: Callable, *args: Any) -> tuple[float, int, Any]:
    """Run ``fn(*args)`` in a forked process: (seconds, peak memory growth in bytes, result).

    Peak growth is the process's maximum RSS minus its RSS at the call: what the call itself
    needed, whatever the parent had loaded before.
    """
    dt, peak, out, _ = measure_cpu(fn, *args)
    return dt, peak, out


def measure_cpu(fn: Callable, *args: Any) -> tuple[float, int, Any, float]:
    """As :func:`measure`, and the CPU seconds of the call (user + system, all threads): on a
    shared, loaded machine they vary less than the wall-clock seconds."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    res = q.get()
    p.join()
    return res


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<52} {value:>16}  {note}")
