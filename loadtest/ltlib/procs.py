"""Processes the load test starts: started in their own session, stopped by PID only.

Every child is registered here, so `stop_all()` (called from `finally`, atexit and the
SIGINT/SIGTERM handlers of run.py) ends exactly what this run started and nothing else.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

_lock = threading.Lock()
_procs: dict[int, tuple[subprocess.Popen, str]] = {}


def start(cmd: list[str], *, name: str, env: dict[str, str], stdout, stderr, cwd=None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                         cwd=cwd, start_new_session=True)
    with _lock:
        _procs[p.pid] = (p, name)
    return p


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict ({} when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in f)}
    except OSError:
        return {}


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set size) of a live process, in MiB."""
    v = proc_status(pid).get("VmHWM")
    return round(int(v.split()[0]) / 1024, 1) if v else None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (its threads included), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def stop(p: subprocess.Popen, grace: float = 5.0) -> int | None:
    """SIGTERM to the process group we created for `p` (its id = p.pid), SIGKILL after
    `grace` seconds. Returns the exit code."""
    if p.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)          # the group whose id is this child's pid
            except ProcessLookupError:
                break
            except PermissionError:
                p.send_signal(sig)
            try:
                p.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:  # leader gone: make sure helpers it left in its group are gone too
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    with _lock:
        _procs.pop(p.pid, None)
    return p.poll()


def stop_all() -> None:
    with _lock:
        items = list(_procs.values())
    for p, _name in items:
        stop(p, grace=3.0)


def wait_until(pred, timeout: float, interval: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())
