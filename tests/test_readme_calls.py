"""The README's call-record example runs as it is written, against the in-process fake."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Task details and call records", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the section has no Python example"
    return match.group(1)


def test_the_call_record_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _example()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "True"
    assert " calls; itc1." in lines[-2]
    assert int(lines[-2].split()[0]) > 100
