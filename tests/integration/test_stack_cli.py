"""``make stack`` refuses to start without its programs, naming each missing one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_stack_names_every_missing_program(tmp_path: Path) -> None:
    """No nginx on PATH and no collector binary: exit 2, one line for each, with how to get it."""
    env = {**os.environ, "PATH": str(tmp_path), "OTELCOL_BIN": str(tmp_path / "otelcol-logkit")}
    result = subprocess.run(
        [sys.executable, "-m", "examples.stack.run", "--lifetime", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 2 == result.returncode
    assert "make stack: nginx is not installed: apt-get install -y nginx" in result.stderr
    assert f"make stack: the collector {tmp_path / 'otelcol-logkit'} is missing" in result.stderr
    assert "" == result.stdout
