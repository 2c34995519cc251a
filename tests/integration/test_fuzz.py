"""A bounded fuzz run over the public OpenAPI document: no input gets a 500."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.stack import Workspace

BUDGET_S = 45


async def test_no_generated_request_gets_a_server_error(
    workspace: Workspace, tmp_path: Path
) -> None:
    cli = Path(sys.executable).parent / "schemathesis"
    proc = await asyncio.create_subprocess_exec(
        str(cli), "run", f"{workspace.stack.url}/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "15",
        "--max-time", str(BUDGET_S),
        "--seed", "1",
        "--header", f"Authorization: Bearer {workspace.admin_key}",
        "--request-timeout", "10",
        "--warnings", "off",
        "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=BUDGET_S * 4)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert "No issues found" in report, report[-3000:]
