"""The guide in docs/ and the README stay true: every shell example runs against the whole
system, every JSON block parses, and every journey in docs/ and examples/ passes
``POST /v1/journeys/validate``.

Shell examples are the ``sh`` blocks that use ``$WAYPOST``; a page's blocks run in order in
one bash (so ids captured by one block serve the next), with ``curl`` failing on any
answer of 400 or more. Blocks without ``$WAYPOST`` (``make up``, deployment commands) are
not run, and no ``curl`` example may do without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios import load, make_concrete, scenario_names
from tests.stack import Stack, new_workspace

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# Every answer of 400 or more fails the example; the answers are printed for the failure.
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body -sS "$@"; echo; }
"""


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(page.read_text()) if lang == language]


def runnable(page: Path) -> list[str]:
    return [b for b in blocks(page, "sh") if "$WAYPOST" in b]


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_guide_is_there() -> None:
    """The pages the README links to exist, and some of them have examples to run."""
    assert {"api.md", "concepts.md", "journeys.md", "operations.md", "security.md"} <= {
        p.name for p in PAGES
    }
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
    assert sum(len(runnable(p)) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_no_curl_example_goes_unrun(page: Path) -> None:
    for body in blocks(page, "sh"):
        if "curl " in body:
            assert "$WAYPOST" in body, f"{name(page)}: a curl example that the doc test skips"


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=name)
async def test_shell_examples_run(stack: Stack, page: Path, tmp_path: Path) -> None:
    ws = await new_workspace(stack, require_event_triggers=True)
    script = PRELUDE + "\n".join(runnable(page))
    env = {**os.environ, "WAYPOST": stack.url, "KEY": ws.admin_key}
    # Asynchronous: the system answering the examples runs on this event loop.
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    assert proc.returncode == 0, f"{name(page)}:\n{output.decode()}"


def json_blocks() -> list[tuple[str, int, str]]:
    return [(name(p), i, b) for p in PAGES for i, b in enumerate(blocks(p, "json"))]


@pytest.mark.parametrize(("page", "index", "text"), json_blocks(), ids=lambda v: str(v)[:30])
def test_json_blocks_parse(page: str, index: int, text: str) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{page}, JSON block {index}: {exc}")


def journeys() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"examples/{n}", load(n)) for n in scenario_names()]
    for page, index, text in json_blocks():
        body = json.loads(text)
        if isinstance(body, dict) and "stages" in body:
            found.append((f"{page}#{index}", body))
    return found


async def test_every_journey_of_the_guide_and_the_examples_validates(stack: Stack) -> None:
    found = journeys()
    assert len(found) > len(scenario_names()) + 5, "the journey reference has its examples"
    ws = await new_workspace(stack)
    ids: dict[str, str] = {}
    async with ws.client() as c:
        for where, body in found:
            concrete = await make_concrete(c, body, ids)
            r = await c.post("/v1/journeys/validate", json=concrete)
            assert r.status_code == 200, f"{where}: {r.text}"


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_links_between_pages_lead_somewhere(page: Path) -> None:
    text = BLOCK.sub("", page.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+:", target):
            continue  # an address of the running system or the web
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.exists(), f"{name(page)} links to {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{name(page)} links to a missing {target}"
