"""This process as another process may name it: host, pid and the pid's start time.

An upload's writer claim carries it (services/uploads.py), so that a process on the same
host can tell at once whether the holder still runs: a pid may be reused, but not with
the same start time. The host part includes the pid namespace, so two containers that
share a host name but not their pids never judge each other's processes.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path


@cache
def _host() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}{namespace}"


def _started(pid: int) -> str | None:
    """The pid's start time (clock ticks after boot), or None if no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses.
    return stat.rsplit(")", 1)[1].split()[19]


@cache
def _identity(pid: int) -> str:
    return f"{_host()}:{pid}:{_started(pid) or '?'}"


def identity() -> str:
    """This process: `host[pidns]:pid:start`."""
    return _identity(os.getpid())


def gone(holder: str) -> bool:
    """Whether `holder` (an identity) names a process of this host that no longer runs;
    False for another host's, which only its silence can tell, and where /proc is not."""
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != _host() or not pid.isdigit() or started in ("", "?"):
        return False
    return _started(int(pid)) != started
