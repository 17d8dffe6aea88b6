"""The orchestrator's side of the load generator: starts `python -m bench.loadgen` processes and talks to them."""
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Agent:
    """One load-generator process; one JSON line in, one JSON line out."""

    def __init__(self, role: str, config: dict, log_path: Path):
        self.role = role
        log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "bench.loadgen", role], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        log.close()
        self.log_path = log_path
        self.buf = b""
        self.send(config)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, obj) -> None:
        self.process.stdin.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        self.process.stdin.flush()

    def read(self, timeout: float):
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load generator {self.role} (pid {self.pid}) did not answer in {timeout:.0f}s; "
                                   f"log {self.log_path}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"load generator {self.role} (pid {self.pid}) exited: "
                                       f"{self.log_path.read_text()[-2000:]}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, obj, timeout: float = 60):
        self.send(obj)
        return self.read(timeout)

    def close(self, timeout: float = 15) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class SubscriberFleet:
    """Subscribers spread over `procs` load-generator processes: process p plays subscribers p, p+procs, ..."""

    def __init__(self, server, subs: list, procs: int, run_dir: Path, poll_timeout: int = 55,
                 open_rate: float = 2000, extra: dict = None):
        self.size = len(subs)
        self._opened = 0
        self.procs = max(1, min(procs, len(subs)))
        self.agents = []
        for p in range(self.procs):
            config = {"system": server.kind, "host": server.host, "port": server.port,
                      "subs": subs[p::self.procs], "poll_timeout": poll_timeout,
                      "open_rate": open_rate / self.procs, **(extra or {})}
            self.agents.append(Agent("subscribe", config, run_dir / f"loadgen-sub-{server.label}-{p}.log"))

    def pids(self) -> list:
        return [a.pid for a in self.agents]

    def _all(self, command: dict, timeout: float = 60) -> list:
        for agent in self.agents:
            agent.send(command)
        return [agent.read(timeout) for agent in self.agents]

    @property
    def opened(self) -> int:
        return self._opened

    def open(self, upto: int) -> None:
        upto = min(upto, self.size)
        self._opened = max(self._opened, upto)
        for p, agent in enumerate(self.agents):
            agent.send({"cmd": "open", "upto": max(0, (upto - p + self.procs - 1) // self.procs)})
        for agent in self.agents:
            agent.read(30)

    def status(self) -> dict:
        parts = self._all({"cmd": "status"})
        total = {k: sum(s[k] for s in parts) for k in ("opened", "held", "answers", "received", "churns", "errors",
                                                          "cpu_s", "rss_kb")}
        total["error_samples"] = [e for s in parts for e in s["error_samples"]][:10]
        return total

    def receipts(self) -> list:
        """(subscriber index, content, receipt unix ns) of every message received since the last call."""
        out = []
        for p, report in enumerate(self._all({"cmd": "report"}, timeout=120)):
            out += [(local * self.procs + p, content, ns) for local, content, ns in report["receipts"]]
        return out

    def churn(self, fraction: float) -> None:
        self._all({"cmd": "churn", "fraction": fraction})

    def stop(self) -> dict:
        finals = []
        for agent in self.agents:
            try:
                agent.send({"cmd": "stop"})
            except OSError:
                pass
        for agent in self.agents:
            try:
                finals.append(agent.read(30))
            except (TimeoutError, RuntimeError) as exc:
                finals.append({"errors": 0, "error_samples": [str(exc)]})
            agent.close()
        return {"errors": sum(f.get("errors", 0) for f in finals)}


def run_publishers(server, config: dict, procs: int, run_dir: Path, lead_s: float = 1.0) -> dict:
    """One open-loop publishing run split over `procs` processes; their results merged."""
    start_at = time.time_ns() + int(lead_s * 1e9)
    agents = [Agent("publish", {"system": server.kind, "host": server.host, "port": server.port, "mode": "rate",
                                **config, "stride": procs, "offset": p, "start_at_ns": start_at},
                    run_dir / f"loadgen-pub-{server.label}-{p}.log") for p in range(procs)]
    timeout = lead_s + float(config["duration"]) + 120
    results = []
    for agent in agents:
        results.append(agent.read(timeout))
        agent.close()
    return {
        "sent": [s for r in results for s in r["sent"]],
        "planned": sum(r["planned"] for r in results),
        "unsent": sum(r["unsent"] for r in results),
        "abandoned": sum(r["abandoned"] for r in results),
        "max_lag_ms": max(r["max_lag_ms"] for r in results),
        "send_window_s": max(r["send_window_s"] for r in results),
        "cpu_s": sum(r["cpu_s"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:10],
        "start_ns": start_at,
    }


def run_fanout_publish(server, config: dict, run_dir: Path, timeout: float = 180) -> dict:
    agent = Agent("publish", {"system": server.kind, "host": server.host, "port": server.port, "mode": "fanout",
                              **config}, run_dir / f"loadgen-fanout-{server.label}.log")
    try:
        return agent.read(timeout)
    finally:
        agent.close()


def run_setup(server, config: dict, run_dir: Path, timeout: float = 600) -> dict:
    agent = Agent("setup", {"host": server.host, "port": server.port, **config}, run_dir / "loadgen-setup.log")
    try:
        return agent.read(timeout)
    finally:
        agent.close()


def run_hammers(server, config: dict, procs: int, connections: int, run_dir: Path) -> list:
    """Closed-loop GETs from `procs` processes sharing `connections` connections; each process's result."""
    agents = [Agent("hammer", {"host": server.host, "port": server.port, **config,
                               "connections": connections // procs + (p < connections % procs)},
                    run_dir / f"loadgen-hammer-{server.label}-{p}.log") for p in range(procs)]
    results = []
    for agent in agents:
        results.append(agent.read(float(config["duration"]) + 60))
        agent.close()
    return results
