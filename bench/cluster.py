"""A local Redis Cluster from Debian's redis-server: N masters with a replica each, on free ports in a temp dir.

Used by the tests (tests/conftest.py, cluster fixtures) and by `make bench`'s cluster variant. Only the
processes it started are stopped, by pid.
"""
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
BUS_PORT_OFFSET = 10000  # Redis Cluster's bus port is the client port + 10000


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list:
    """`count` ports whose cluster bus ports are free too."""
    ports = []
    while len(ports) < count:
        port = random.randint(20000, 40000)
        if port not in ports and _port_free(port) and _port_free(port + BUS_PORT_OFFSET):
            ports.append(port)
    return ports


def _ask(port: int, *command, timeout: float = 5) -> str:
    result = subprocess.run([REDIS_CLI, "-p", str(port), *command], capture_output=True, text=True, timeout=timeout)
    return result.stdout


class LocalCluster:
    """`masters` masters and as many replicas; node_timeout (ms) is how long a master may be silent
    before its replica takes over."""

    def __init__(self, masters: int = 3, node_timeout: int = 2000):
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(f"{REDIS_SERVER} is missing: `apt-get install redis-server` (make test does)")
        self.masters = masters
        self.node_timeout = node_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="hp-cluster-", dir="/tmp"))
        self.ports = _free_ports(2 * masters)
        self.processes = {}  # port -> Popen

    @property
    def seeds(self) -> str:
        """HIPUSH_REDIS_CLUSTER_NODES for this cluster."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports[:self.masters])

    def start(self) -> "LocalCluster":
        try:
            for port in self.ports:
                self._start_node(port)
            subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                            "--cluster-replicas", "1", "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(self.node_timeout),
             "--dir", str(node_dir), "--save", "", "--appendonly", "no", "--maxclients", "50000",
             "--logfile", str(node_dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # a terminal's Ctrl-C must not reach it
        deadline = time.monotonic() + 15
        while "PONG" not in _ask(port, "PING"):
            if time.monotonic() > deadline or self.processes[port].poll() is not None:
                raise RuntimeError(f"redis-server on port {port} did not start; see {node_dir / 'redis.log'}")
            time.sleep(0.05)

    def live_ports(self) -> list:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every live node says the cluster is ok, `masters` masters serve all slots and every live
        replica has synced with its master (a replica that never synced cannot take over)."""
        deadline = time.monotonic() + timeout
        while True:
            states = [_ask(port, "CLUSTER", "INFO") for port in self.live_ports()]
            replication = [_ask(port, "INFO", "replication") for port in self.live_ports()]
            if states and all("cluster_state:ok" in s and "cluster_slots_ok:16384" in s for s in states) \
                    and all("role:master" in r or "master_link_status:up" in r for r in replication) \
                    and len(self.master_ports()) == self.masters:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster in {self.dir} did not become healthy within {timeout:g}s")
            time.sleep(0.1)

    def master_ports(self) -> list:
        """Live masters that serve slots."""
        masters = []
        for line in _ask(self.live_ports()[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) >= 9 and "master" in fields[2] and "fail" not in fields[2]:
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                if port in self.live_ports():
                    masters.append(port)
        return masters

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot."""
        slot = int(_ask(self.live_ports()[0], "CLUSTER", "KEYSLOT", key).strip())
        for line in _ask(self.live_ports()[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                lo, _, hi = span.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def restart(self, port: int) -> None:
        """Starts a killed node again (it rejoins as a replica of whoever took over its slots)."""
        self._start_node(port)

    def flush(self) -> None:
        for port in self.master_ports():
            _ask(port, "FLUSHALL")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    # `python -m bench.cluster`: a cluster to try hipush on by hand; Ctrl-C stops it
    cluster = LocalCluster().start()
    print(f"HIPUSH_REDIS_CLUSTER_NODES={cluster.seeds}  (data in {cluster.dir}; Ctrl-C stops it)", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
