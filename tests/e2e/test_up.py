"""``waypost up`` as a user runs it: starts everything, supervises, stops without orphans."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.sinks import Mailbox, run_mailbox
from waypost.embedded import free_port
from waypost.supervisor import DEFAULT_GRACE_S

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
        self.data_dir = data_dir
        self.log = data_dir.parent / f"up-{port}-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            # A process group of its own, like the foreground job of a terminal.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "waypost", "up", "--data-dir", str(data_dir),
                 "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
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
def box() -> Iterator[Mailbox]:
    yield from run_mailbox()


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


def test_ctrl_c_under_load_stops_services_then_nats_then_postgres(
    data_dir: Path, box: Mailbox
) -> None:
    """Ctrl-C in the terminal signals the whole foreground process group. The services
    drain into NATS and PostgreSQL, which must still be there: each stops in its turn,
    within the supervisor's grace, none is killed, and no log holds a traceback."""
    up = Up(data_dir, free_port())
    try:
        wait_until(lambda: "Waypost is up" in up.output(), "the ready message")
        found = re.search(r"admin key \(shown once, keep it\): (\S+)", up.output())
        assert found, up.output()
        client = httpx.Client(
            base_url=up.url, headers={"Authorization": f"Bearer {found[1]}"}, timeout=30
        )
        _welcome_journey(client, box.port)
        load = Load(client)
        load.start()
        wait_until(lambda: len(box.messages) >= 20, "messages going out under load", 60)

        os.killpg(up.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        up.proc.wait(timeout=DEFAULT_GRACE_S * 4)
        load.stop()
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    out = up.output()
    assert up.proc.returncode == 0, out
    assert "did not stop" not in out, out
    assert "killing" not in out, out
    assert "while stopping" not in out, out
    order = ("stopping services", "stopping NATS", "stopping PostgreSQL", "[waypost] stopped")
    said = [out.index(line) for line in order]
    assert said == sorted(said), out
    logs = {p.name: p.read_text(errors="replace") for p in (data_dir / "logs").glob("*.log")}
    assert set(logs) == {f"{name}.log" for name in SERVICES}
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
    # PostgreSQL was asked to stop once, by us, after the services: not by the terminal.
    pg_log = (data_dir / "postgres" / "server.log").read_text(errors="replace")
    assert pg_log.count("received fast shutdown request") == 1, pg_log[-2000:]
    assert "terminating connection due to administrator command" not in pg_log


class Load(threading.Thread):
    """Posts sign-ups as fast as the gateway takes them, until stopped (or refused)."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            events = [
                {"profile_id": f"p-{uuid.uuid4().hex[:10]}", "name": "signup",
                 "traits": {"email": "someone@example.com"}}
                for _ in range(50)
            ]  # fmt: skip
            try:
                self.client.post("/v1/events/batch", json={"events": events})
            except httpx.HTTPError:
                return

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


def _welcome_journey(client: httpx.Client, smtp_port: int) -> None:
    settings = client.put("/v1/workspace/settings", json={"require_event_triggers": False})
    assert settings.status_code == 200, settings.text
    smtp = {"host": "127.0.0.1", "port": smtp_port, "from": "shop@example.com"}
    connector = client.post("/v1/connectors", json={"name": "mail", "type": "smtp", "config": smtp})
    assert connector.status_code == 201, connector.text
    template = client.post("/v1/templates", json={
        "name": "welcome", "channel": "email", "status": "ready",
        "subject": "Welcome", "body": "Thanks for signing up."})  # fmt: skip
    assert template.status_code == 201, template.text
    step = {"id": "mail", "type": "activation", "channel": "email", "to_attribute": "email",
            "connector_id": connector.json()["id"],
            "template_id": template.json()["id"]}  # fmt: skip
    journey = client.post("/v1/journeys", json={
        "name": "Welcome", "stages": [{"name": "Signed up", "entry": {"event": "signup"},
                                       "steps": [step]}]})  # fmt: skip
    assert journey.status_code == 201, journey.text
    published = client.post(f"/v1/journeys/{journey.json()['id']}/publish")
    assert published.status_code == 200, published.text
