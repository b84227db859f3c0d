"""ruff and mypy on the agent (qrad_agent) and its drivers, so the test command (`.ci/run`) checks them.

Their configuration is in pyproject.toml ([tool.ruff], [tool.mypy]); both tools are pinned in the `test`
extra. ruff must be clean. mypy is a ratchet: the errors it still reports are listed in
tests/mypy_baseline.txt as "path: message" (no line numbers, so edits elsewhere in a file do not matter),
and the test fails on any error not listed there. Fixing one: delete its line from the baseline.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["qrad_agent", "drivers"]
MYPY_BASELINE = Path(__file__).with_name("mypy_baseline.txt")
ERROR_LINE = re.compile(r"^(?P<path>[^:\s]+\.py):\d+(?::\d+)?: error: (?P<message>.*)$")


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert "No module named" not in out.stderr, f"{tool} is missing: pip install -e '.[test]'\n{out.stderr}"
    return out


def mypy_errors(output: str) -> Counter[str]:
    """mypy's error lines as "path: message [code]" with their counts (notes and the summary dropped)."""
    found: Counter[str] = Counter()
    for line in output.splitlines():
        match = ERROR_LINE.match(line.strip())
        if match:
            found[f"{match['path']}: {match['message']}"] += 1
    return found


def _baseline() -> Counter[str]:
    lines = MYPY_BASELINE.read_text().splitlines()
    return Counter(line for line in lines if line.strip() and not line.startswith("#"))


def test_ruff_is_clean() -> None:
    out = _run("ruff", "check", "--no-cache", *TARGETS)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_reports_no_error_beyond_the_baseline() -> None:
    out = _run("mypy", *TARGETS)
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 2: mypy itself failed (config, crash)
    found, known = mypy_errors(out.stdout), _baseline()
    new = found - known
    assert not new, "new mypy errors (fix them; see tests/mypy_baseline.txt):\n" + "\n".join(
        line for line in out.stdout.splitlines()
        if (m := ERROR_LINE.match(line.strip())) and f"{m['path']}: {m['message']}" in new)
    fixed = known - found
    if fixed:
        warnings.warn("mypy no longer reports these; delete them from tests/mypy_baseline.txt:\n"
                      + "\n".join(sorted(fixed)), stacklevel=1)


def test_the_baseline_parser_keeps_errors_and_drops_notes() -> None:
    output = ("qrad_agent/x.py:12: error: Missing return statement  [return]\n"
              "qrad_agent/x.py:40: error: Missing return statement  [return]\n"
              "qrad_agent/x.py:40: note: Use \"typing.Literal[False]\"\n"
              "Found 2 errors in 1 file (checked 3 source files)\n")
    assert mypy_errors(output) == Counter({"qrad_agent/x.py: Missing return statement  [return]": 2})
