"""The README's two commands are the ones CI and users run; the code stays ruff-clean."""

from __future__ import annotations

import sys

from conftest import ROOT, run_process


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    assert ci.replace(" -q", "") in readme


def test_ruff_lint_and_format():
    for args in (["check", "."], ["format", "--check", "."]):
        proc = run_process([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
