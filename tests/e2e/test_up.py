"""``waypost up`` as a user runs it: starts everything, supervises, stops without orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from waypost.embedded import free_port

pytestmark = pytest.mark.e2e
SERVICES = ("gateway", "designer", "runtime", "scheduler", "activator")


def wait_until(check: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Up:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
        self.url = f"http://127.0.0.1:{port}"
        self.log = data_dir.parent / f"up-{port}-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "waypost", "up", "--data-dir", str(data_dir),
                 "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def service(self, name: str) -> psutil.Process:
        for p in self.tree():
            if p.cmdline()[-1:] == [name] and "waypost" in p.cmdline():
                return p
        raise LookupError(name)

    def stop(self, sig: int) -> list[psutil.Process]:
        descendants = self.tree()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=90)
        return descendants


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "waypost-data"


def test_up_supervises_and_stops_everything(data_dir: Path) -> None:
    up = Up(data_dir, free_port())
    try:
        wait_until(lambda: f"Waypost is up at {up.url}" in up.output(), "the ready message")
        assert ready(up.url)
        out = up.output()
        assert "admin key (shown once, keep it): wp_" in out
        names = {" ".join(p.cmdline()) for p in up.tree()}
        for service in SERVICES:
            assert any(n.endswith(f"waypost {service}") for n in names), service
        assert any("nats-server" in n for n in names)
        assert any("postgres" in n for n in names)

        # A service killed outright comes back and the system is ready again.
        victim = up.service("runtime")
        victim.kill()
        wait_until(lambda: _restarted(up, "runtime", victim.pid), "the runtime's restart", 30)
        wait_until(lambda: ready(up.url), "/readyz after the restart", 60)
        assert "runtime exited with code -9; restarting" in up.output()

        descendants = up.stop(signal.SIGINT)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    assert up.proc.returncode == 0, up.output()
    assert len(descendants) >= 7
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"orphans left behind: {[p.pid for p in alive]}"


def test_second_up_on_the_same_data_dir_finds_everything_again(data_dir: Path) -> None:
    for attempt in range(2):
        up = Up(data_dir, free_port())
        try:
            wait_until(lambda up=up: "Waypost is up" in up.output(), f"start {attempt + 1}")
            descendants = up.stop(signal.SIGTERM)
        finally:
            if up.proc.poll() is None:
                up.proc.kill()
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == []
        printed_key = "admin key (shown once" in up.output()
        # The first start generates the admin key; the second finds it in the same database.
        assert printed_key == (attempt == 0), up.output()


def _restarted(up: Up, name: str, old_pid: int) -> bool:
    try:
        return up.service(name).pid != old_pid
    except (LookupError, psutil.Error):
        return False
