"""Memory and CPU of processes, read from /proc (Linux)."""
import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list:
    """Direct children of a process."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def total_rss_kb(pids) -> int:
    return sum(rss_kb(p) for p in pids)


def total_cpu_seconds(pids) -> float:
    return sum(cpu_seconds(p) for p in pids)


class CpuMeter:
    """CPU used by a set of processes between start() and percent(), as % of one core."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.start()

    def start(self):
        self.t0 = time.monotonic()
        self.c0 = total_cpu_seconds(self.pids)
        return self

    def percent(self) -> float:
        elapsed = max(1e-6, time.monotonic() - self.t0)
        return round(100.0 * (total_cpu_seconds(self.pids) - self.c0) / elapsed, 1)


def loadavg() -> list:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def mem_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0
