"""One direction of imports: the import-linter contracts in pyproject.toml hold, and would catch a bad
import; a batch run loads neither textual nor torch.

The contracts are checked on the package as installed (the wheel unpacked): in a checkout engines/
sits beside collapse_tui/, where import-linter, which walks folders, would not see it as
collapse_tui.engines (an editable install maps it with an import hook)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_process

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(site: Path) -> subprocess.CompletedProcess:
    """lint-imports with pyproject.toml's contracts on the package in site (first on the path)."""
    return run_process(
        [LINT_IMPORTS, str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=site,
        env=os.environ | {"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_hold(installed):
    proc = lint_imports(installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


def test_each_contract_catches_a_bad_import(installed, tmp_path):
    pkg = tmp_path / "collapse_tui"
    shutil.copytree(installed / "collapse_tui", pkg)
    bad = {  # one per contract; lazy imports count
        "engines/gaussian.py": "def _bad():\n    import rich\n",
        "loop.py": "def _bad():\n    from . import batch\n",
        "rundir.py": "import textual\n",
        "summary.py": "import torch\n",
    }
    for path, code in bad.items():
        with open(pkg / path, "a") as f:
            f.write("\n\n" + code)
    proc = lint_imports(tmp_path)
    out = proc.stdout
    assert proc.returncode == 1 and "Contracts: 0 kept, 4 broken." in out, out + proc.stderr
    for line in (
        "collapse_tui.engines.gaussian -> rich",
        "collapse_tui.loop -> collapse_tui.batch",
        "collapse_tui.rundir -> textual",
        "collapse_tui.summary -> torch",
    ):
        assert line in out, (line, out)
    assert "figures" not in out.split("Broken contracts")[1]  # engines/figures may import the report


def test_running_a_batch_imports_no_textual_or_torch(tmp_path):
    """Nor numba for gaussian-quick: its detector's fits are small, done in numpy (detector.kernels)."""
    code = (
        "import sys; from collapse_tui.cli import main; "
        "code = main(['--batch', 'gaussian-quick', '--set', 'experiment.generations=3', "
        f"'--runs-dir', r'{tmp_path}']); "
        "bad = [m for m in ('textual', 'torch', 'transformers', 'numba') if m in sys.modules]; "
        "print(code, bad)"
    )
    out = run_process([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "0 []"
