"""Tollway's own contracts are `buf lint`-clean (STANDARD rules), as DESIGN.md requires."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUF = REPO / ".tools" / "node_modules" / ".bin" / "buf"


def test_buf_lint_is_clean() -> None:
    assert BUF.exists(), "buf is not installed: run `make tools` (make test does)"
    result = subprocess.run([str(BUF), "lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
