"""What a new user meets when the text, the hub or the local OPT folder is not what the tool expects
(issue 27, item 15): a text_dir without train.txt or test.txt is named as such, not blamed on the hub;
the download advice names the Hugging Face command installed here (`hf` since huggingface_hub 1.0
dropped `huggingface-cli`); `python -m collapse_tui.engines.opt_local --help` prints its usage and
writes nothing, and it never writes into a folder that holds files."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WIKI_TEST

from collapse_tui.cli import main
from collapse_tui.engines import hub
from collapse_tui.engines.lm import OPTEngine  # imports no torch

FILE_SIZE = 1 << 20  # what a child may write per file: a regression that builds a model dies, not fills a disk


@pytest.mark.parametrize(
    "present, missing", [((), "train.txt or test.txt"), (("train.txt",), "test.txt")], ids=["empty", "train"]
)
def test_a_text_dir_without_its_files_names_the_missing_one(tmp_path, capsys, no_hub, present, missing):
    """engine.text_dir pointing at a folder without train.txt (or test.txt): one line naming the file
    and the names looked for, exit 2, no run directory; not 'the hub cannot be reached'."""
    folder = tmp_path / "text"
    folder.mkdir()
    for name in present:
        (folder / name).write_text(Path(WIKI_TEST).read_text())
    runs = tmp_path / "runs"
    sets = ["--set", "engine.train=''", "--set", "engine.test=''", "--set", f"engine.text_dir={folder}"]
    assert main(["--batch", "ngram-quick", "--runs-dir", str(runs), *sets]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"collapse-tui: engine.text_dir: {folder} has no {missing} (expected train.txt and test.txt, "
        "valid.txt optional, or WikiText's wiki.train.raw and wiki.test.raw)"
    ]
    assert not runs.exists()


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "on_path, beside, advice",
    [
        (("hf", "huggingface-cli"), (), "hf download facebook/opt-125m --local-dir DIR"),
        ((), ("huggingface-cli",), "{env}/huggingface-cli download facebook/opt-125m --local-dir DIR"),
        ((), (), "pip install huggingface_hub, then hf download facebook/opt-125m --local-dir DIR"),
    ],
    ids=["hf on PATH", "huggingface-cli beside python", "none"],
)
def test_the_download_advice_names_the_hugging_face_command_installed(tmp_path, monkeypatch, on_path, beside, advice):
    """`hf` when it is on PATH, the older `huggingface-cli` by its path when only a virtual environment
    not activated has it, and how to install one when there is none."""
    for name in on_path:
        executable(tmp_path / "bin" / name)
    for name in beside:
        executable(tmp_path / "env" / name)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "env" / "python"))
    assert hub.download_command("facebook/opt-125m") == advice.format(env=tmp_path / "env")


def test_an_unreachable_hub_advises_the_command_installed(tmp_path, monkeypatch, no_hub):
    """The OPT engine's hub message, met before a run exists, gives that command."""
    executable(tmp_path / "bin" / "hf")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "env" / "python"))
    engine = OPTEngine({"model": "facebook/opt-125m", "train": WIKI_TEST, "test": WIKI_TEST})
    [line] = engine.preflight()
    assert line.startswith("engine.model: the model facebook/opt-125m comes from the Hugging Face hub")
    assert "(hf download facebook/opt-125m --local-dir DIR)" in line and "huggingface-cli" not in line


def opt_local(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """python -m collapse_tui.engines.opt_local args, in a session of its own (killed on the way out),
    writing at most FILE_SIZE bytes a file."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE, FILE_SIZE))

    proc = subprocess.Popen(
        [sys.executable, "-m", "collapse_tui.engines.opt_local", *args], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=limit,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_opt_local_help_prints_its_usage_and_writes_nothing(tmp_path):
    """--help is help: usage on stdout, exit 0, no folder named --help (no 482 MB model in it)."""
    proc = opt_local("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage: python -m collapse_tui.engines.opt_local [-h] [--seed SEED] folder\n")
    assert list(tmp_path.iterdir()) == []


def test_opt_local_never_writes_into_a_folder_that_holds_files(tmp_path):
    """A folder with a file in it: one line, exit 2, the folder as it was."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    proc = opt_local(str(folder), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"python -m collapse_tui.engines.opt_local: {folder}: exists and is not an empty folder; give a new folder\n"
    )
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "keep me"
