"""One direction of imports: engines know nothing of the core or the UI; the core has no textual;
the command line starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT


def imported_modules(folder: str, skip: str | None = None) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / folder).rglob("*.py"):
        if skip and skip in path.parts:
            continue
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add("." * node.level + (node.module or "").split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_engines_import_neither_the_core_nor_a_ui():
    for path, names in imported_modules("engines").items():
        assert not names & {"textual", "rich", "collapse_tui", ".."}, (path, names)


def test_the_core_imports_no_textual():
    for path, names in imported_modules("collapse_tui", skip="tui").items():
        assert "textual" not in names, path


def test_running_a_batch_imports_no_textual_or_torch(tmp_path):
    code = (
        "import sys; from collapse_tui.cli import main; "
        "code = main(['--batch', 'gaussian-quick', '--set', 'experiment.generations=3', "
        f"'--runs-dir', r'{tmp_path}']); "
        "bad = [m for m in ('textual', 'torch', 'transformers') if m in sys.modules]; "
        "print(code, bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "0 []"
