"""What a shared GPU server does to a run directory, done to gaussian-quick and gmm-quick runs: two writers,
tampered and torn files, a full disk, a closed pipe, signals, links and devices where files should be,
values that would eat the machine. Each fault ends in a clear exit status and one line, with
metrics.jsonl unchanged or equal row for row to an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process, running_past, spawn, wait_for

from collapse_tui import loop
from collapse_tui.cli import main
from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir, RunDirError

QUICK = ["--set", "experiment.generations=12", "--set", "experiment.seeds=3"]


def cli(*args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    return spawn(
        [sys.executable, "-m", "collapse_tui", *args],
        cwd=cwd,
        env=env,
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def stopped_run(root: Path, after: int = 4, preset: str = "gaussian-quick", sets: tuple = ()) -> RunDir:
    """A run of 12 generations and 3 seeds (unless sets say otherwise) stopped after generation `after`
    (checkpointed there), made by a child process, so that this process holds no lock on it."""
    code = (
        "import sys\n"
        "from collapse_tui import loop\n"
        "from collapse_tui.preset_files import load_preset\n"
        "from collapse_tui.events import GenerationDone\n"
        "from collapse_tui.rundir import RunDir\n"
        f"cfg = load_preset({preset!r}, ['experiment.generations=12', 'experiment.seeds=3', *{list(sets)!r}])\n"
        f"run = RunDir.create({str(root)!r}, cfg)\n"
        "c = loop.Control()\n"
        f"emit = lambda ev: c.stop() if isinstance(ev, GenerationDone) and ev.generation == {after} else None\n"
        "print(run.path, loop.run(run, emit, c))\n"
    )
    out = run_process([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "stopped"
    return RunDir(Path(out[0]))


def one_line_exit_2(proc: subprocess.Popen, *words: str) -> str:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("collapse-tui: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


# 1. two writers -------------------------------------------------------------------------------------
def test_two_resumes_started_at_the_same_instant_give_one_writer(tmp_path):
    # about 1 s of generations (the detector off: it is no part of this), and the lock's holder held (SIGSTOP)
    # until the other one gave up: they overlap however loaded the machine
    sets = ("experiment.generations=400", "experiment.seeds=50", "engine.samples=2000", "data.detector_auc=false")
    run = stopped_run(tmp_path / "a", sets=sets)
    settings = [a for s in sets for a in ("--set", s)]
    assert main(["--batch", "gaussian-quick", *settings, "--runs-dir", str(tmp_path / "b")]) == 0
    (whole,) = (tmp_path / "b").iterdir()
    uninterrupted = (whole / "metrics.jsonl").read_text().splitlines()
    procs = [cli("--batch", "--resume", str(run.path), cwd=tmp_path) for _ in range(2)]
    by_pid = {str(p.pid): p for p in procs}
    while (holder := by_pid.get(run.lock_path.read_text().strip())) is None and None in [p.poll() for p in procs]:
        time.sleep(0.001)  # the holder writes its pid in the lock once it has it
    if holder is not None:
        holder.send_signal(signal.SIGSTOP)
        (other,) = [p for p in procs if p is not holder]
        other.wait(120)
        holder.send_signal(signal.SIGCONT)
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    (loser,) = [err for code, err in results if code == 2]
    winner = next(p for p, (code, _) in zip(procs, results) if code == 0)
    assert f"another process (pid {winner.pid}) is writing this run" in loser and loser.count("\n") == 1
    lines = run.metrics_path.read_text().splitlines()
    assert lines == uninterrupted  # every (seed, generation) exactly once, as never interrupted
    pairs = [(json.loads(x)["seed"], json.loads(x)["generation"]) for x in lines]
    assert len(pairs) == len(set(pairs)) == 50 * 400


def test_the_app_loop_cannot_resume_a_run_a_batch_is_writing(tmp_path):
    """The app's `r` runs loop.run in its worker: it meets the lock before writing anything."""
    run = stopped_run(tmp_path)
    before = run.metrics_path.read_bytes()
    holder = spawn(
        [sys.executable, "-c", f"from collapse_tui.rundir import RunDir; RunDir({str(run.path)!r}).acquire(); "
         "print('held', flush=True); import time; time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"another process \\(pid {holder.pid}\\) is writing this run"):
            loop.run(run, lambda ev: None, resume=True)
        assert run.metrics_path.read_bytes() == before and run.read_status()["state"] == "stopped"
    finally:
        holder.kill()
        holder.wait()
    assert loop.run(run, lambda ev: None, resume=True) == "finished"  # the holder died: its lock is free


# 2. resume never deletes valid rows ------------------------------------------------------------------
@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: p.write_bytes(p.read_bytes() + b"garbage\n"), ["metrics.jsonl: line 16: not JSON"]),
        (lambda p: p.write_bytes(p.read_bytes()[:-20]), ["metrics.jsonl: the last line is cut off"]),
        (lambda p: p.write_bytes(b""), ["does not match the checkpoint at generation 4", "15 of its 15 rows missing"]),
        (lambda p: shutil.rmtree(p.parent / "state"), ["state: missing, so there is nothing to resume from"]),
    ],
    ids=["garbage-line", "torn", "emptied", "state-removed"],
)
def test_resume_refuses_metrics_that_do_not_match_its_checkpoint(tmp_path, damage, words):
    run = stopped_run(tmp_path)
    damage(run.metrics_path)
    before = run.metrics_path.read_bytes()
    one_line_exit_2(cli("--batch", "--resume", str(run.path), cwd=tmp_path), *words)
    assert run.metrics_path.read_bytes() == before and run.read_status()["state"] == "stopped"


# 3. wrong-shaped but valid JSON ----------------------------------------------------------------------
BAD_STATUS = [
    ("[1, 2]", "status.json: expected a JSON object, got [1, 2]"),
    ('"running"', "status.json: expected a JSON object"),
    ('{"state": "running", "pid": 1180591620717411303424}', "pid 1180591620717411303424 is not a process id"),
    ('{"state": "running", "pid": -1}', "pid -1 is not a process id"),
    (b"\x89PNG\r\n\x1a\n\x00", "status.json: not JSON"),
]
BAD_METRICS = [
    ('{"seed": 0, "perplexity": 1.0}\n', "metrics.jsonl: line 1: generation should be an integer"),
    ("[0, 1]\n", "metrics.jsonl: line 1: expected a JSON object"),
]
READERS = {
    "resume": lambda run, tmp: ["--batch", "--resume", str(run)],
    "report": lambda run, tmp: ["report", str(run), "--out", str(tmp / "rep"), "--format", "svg"],
    "compare": lambda run, tmp: ["compare", str(run)],
    "export": lambda run, tmp: ["export", str(run), "--csv", str(tmp / "m.csv")],
}
CASES = [("status.json", t, w, c) for t, w in BAD_STATUS for c in READERS if c != "export"]  # export: metrics only
CASES += [("metrics.jsonl", t, w, c) for t, w in BAD_METRICS for c in READERS]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> RunDir:
    return stopped_run(tmp_path_factory.mktemp("template"))


@pytest.mark.parametrize("file, text, words, command", CASES)
def test_every_reader_names_the_bad_file_in_one_line(template, tmp_path, file, text, words, command):
    run = tmp_path / "run"
    shutil.copytree(template.path, run)
    (run / file).write_bytes(text if isinstance(text, bytes) else text.encode())
    before = (run / file).read_bytes()
    one_line_exit_2(cli(*READERS[command](run, tmp_path), cwd=tmp_path), words)
    assert (run / file).read_bytes() == before


def test_the_app_lists_an_unreadable_run_and_opens_the_rest(tmp_path):
    import asyncio

    from collapse_tui.tui.app import build_app

    runs = tmp_path / "runs"
    good, bad = stopped_run(runs), stopped_run(runs)
    (bad.path / "status.json").write_text("[]")

    async def states() -> dict[str, str]:
        app = build_app(None, [], runs)
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            table = app.screen.query_one("#runs")
            return {str(k.value): str(table.get_cell(k, "state")) for k in table.rows}

    got = asyncio.run(states())
    assert got == {str(good.path): "stopped", str(bad.path): "unreadable"}


# 4. a full disk ----------------------------------------------------------------------------------------
def test_a_full_disk_fails_the_run_in_one_line_and_it_resumes_once_there_is_space(tmp_path, monkeypatch, capsys):
    real_savez = np.savez

    def savez(f, **arrays):
        if "ckpt-" in f.name and "ckpt-000000" not in f.name:  # the disk is full after the first checkpoint
            raise OSError(errno.ENOSPC, "No space left on device", f.name)
        return real_savez(f, **arrays)

    monkeypatch.setattr(np, "savez", savez)
    runs = tmp_path / "runs"
    sets = [*QUICK, "--set", "experiment.checkpoint_seconds=0"]  # a checkpoint every generation
    assert main(["--batch", "gaussian-quick", *sets, "--runs-dir", str(runs)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and "resume" in err[0]
    (path,) = runs.iterdir()
    run = RunDir(path)
    status = run.read_status()
    assert status["state"] == "failed" and status["error"].startswith("no space left on device")
    assert sorted(p.name for p in run.state_dir.iterdir() if p.name.startswith(".")) == []  # no temp left
    # the checkpoint of generation 1 failed after its rows were written: resume computes them again
    assert status["checkpoint_generation"] == 0 and len(run.read_metrics()) == 2 * 3
    monkeypatch.setattr(np, "savez", real_savez)  # space freed
    assert main(["--batch", "--resume", str(path)]) == 0
    whole = tmp_path / "whole"
    assert main(["--batch", "gaussian-quick", *sets, "--runs-dir", str(whole)]) == 0
    (ref,) = whole.iterdir()
    assert run.metrics_path.read_text() == (ref / "metrics.jsonl").read_text()


def test_a_full_disk_at_creation_leaves_no_temp_folder(tmp_path, monkeypatch, capsys):
    from collapse_tui import rundir

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "atomic_write", full)
    assert main(["--batch", "gaussian-quick", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"collapse-tui: --runs-dir {tmp_path / 'runs'}: cannot create a run there: No space left on device"]
    assert list((tmp_path / "runs").iterdir()) == []


# 5. closed pipes, closed stdout, signals ----------------------------------------------------------------
def test_a_reader_that_goes_away_does_not_end_the_run(tmp_path):
    args = [sys.executable, "-m", "collapse_tui", "--batch", "gmm-quick", "--runs-dir", "runs"]
    proc = spawn(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    assert proc.wait(300) == 0, proc.stderr.read()
    assert proc.stderr.read() == b""
    (path,) = (tmp_path / "runs").iterdir()
    assert RunDir(path).read_status()["state"] == "finished"


def test_a_closed_stdout_does_not_end_the_run(tmp_path):
    code = run_process(
        f"{sys.executable} -m collapse_tui --batch gaussian-quick --runs-dir runs >&-", shell=True, cwd=tmp_path
    ).returncode
    assert code == 0
    (path,) = (tmp_path / "runs").iterdir()
    assert RunDir(path).read_status()["state"] == "finished"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_at_a_checkpoint(tmp_path, sig):
    sets = ["--set", "experiment.generations=100000", "--set", "experiment.checkpoint_seconds=100"]
    proc = cli("--batch", "gaussian-quick", *sets, "--runs-dir", "runs", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while (run := running_past(tmp_path / "runs")) is None:  # until it has finished a generation
        assert time.monotonic() < deadline and proc.poll() is None, "the run never finished a generation"
        time.sleep(0.01)
    proc.send_signal(sig)
    assert proc.wait(60) == 128 + sig, proc.stderr.read()
    status = run.read_status()
    assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] > 0
    assert len(run.read_metrics()) == 20 * (status["generation"] + 1)  # everything done was kept


# 6. 7. devices, FIFOs and links -------------------------------------------------------------------------
def test_export_writes_into_a_fifo_and_a_device_without_replacing_them(tmp_path):
    run = stopped_run(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert main(["export", str(run.path), "--csv", str(fifo)]) == 0
    reader.join(10)
    assert got and got[0].startswith("seed,generation,") and fifo.is_fifo()
    null = tmp_path / "null"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
    assert main(["export", str(run.path), "--csv", str(null)]) == 0
    assert null.is_char_device()


def test_error_log_never_writes_through_a_link(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    run = stopped_run(tmp_path / "runs")
    (run.path / "error.log").symlink_to(outside)
    data = run.state_dir / next(p.name for p in run.state_dir.iterdir() if p.name.startswith("ckpt-"))
    (data / "data.npz").write_bytes(b"not an npz")  # resuming now fails
    assert main(["--batch", "--resume", str(run.path)]) == 1
    assert outside.read_text() == "keep me"
    log = run.path / "error.log"
    assert not log.is_symlink() and "Traceback" in log.read_text()


# 8. state that does not match the preset -----------------------------------------------------------------
@pytest.mark.parametrize(
    "edit, words",
    [
        (  # another engine, its keys valid for it
            lambda t: t.replace('engine = "gmm"', 'engine = "gaussian"').split("[engine]")[0] + "[engine]\ndim = 2\n",
            ["experiment.engine: 'gmm' -> 'gaussian'"],
        ),
        (lambda t: t.replace("seeds = 3", "seeds = 8"), ["experiment.seeds: [0, 1, 2] -> [0, 1, 2, 3, 4, 5, 6, 7]"]),
        (lambda t: t.replace("dim = 2", "dim = 3"), ["engine.dim: 2 -> 3"]),
    ],
)
def test_resume_refuses_a_preset_edited_since_the_start(tmp_path, edit, words):
    run = stopped_run(tmp_path, preset="gmm-quick")
    preset = run.path / "preset.toml"
    preset.write_text(edit(preset.read_text()))
    before = run.metrics_path.read_bytes()
    one_line_exit_2(cli("--batch", "--resume", str(run.path), cwd=tmp_path), "changed since the run started", *words)
    assert run.metrics_path.read_bytes() == before


def test_resume_refuses_a_checkpoint_past_the_end(tmp_path):
    run = stopped_run(tmp_path)
    info = json.loads((run.state_dir / "checkpoint.json").read_text())
    (run.state_dir / "checkpoint.json").write_text(json.dumps(info | {"generation": 1000}))
    one_line_exit_2(cli("--batch", "--resume", str(run.path), cwd=tmp_path), "claims generation 1000 of a run of 12")


# 9. values that pass validation and eat the machine -------------------------------------------------------
@pytest.mark.parametrize(
    "args, words",
    [
        (["--batch", "gaussian-quick", "--set", "data.filter='perplexity'", "--set", "data.filter_keep=1e-6"],
         ["data.filter_keep", "[0.01, 1]"]),
        (["--batch", "/dev/zero"], ["/dev/zero: not a regular file"]),
        (["--batch", "gmm", "--set", "engine.samples=1000000000"], ["GiB", "available", "fewer seeds or samples"]),
    ],
    ids=["filter-keep", "dev-zero", "memory"],
)  # fmt: skip
def test_what_cannot_fit_is_refused_before_a_run_exists(tmp_path, args, words):
    start = time.monotonic()
    one_line_exit_2(cli(*args, "--runs-dir", "runs", cwd=tmp_path), *words)
    assert time.monotonic() - start < 30 and not (tmp_path / "runs").exists()


def test_a_preset_larger_than_a_megabyte_is_refused(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text("[experiment]\nengine = 'gaussian'\n" + "# padding\n" * 200_000)
    assert main(["--batch", str(big), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "larger than a preset's 1 MB limit" in capsys.readouterr().err


# 10. the small ones ------------------------------------------------------------------------------------------
def test_an_ascii_terminal_gets_the_summary_too(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    proc = cli("--batch", "gaussian-quick", *QUICK, "--runs-dir", "runs", cwd=tmp_path, env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "finished:" in out and "perplexity" in out and "?" not in out  # no character it could not show


def test_samples_that_are_no_preview_are_refused_quickly(tmp_path):
    run = stopped_run(tmp_path)
    np.save(run.samples_dir / "gen-000000.npy", np.float32(1.0))  # 0-d
    with pytest.raises(RunDirError, match="at least one dimension"):
        run.load_samples(0)
    with open(run.samples_dir / "gen-000001.npy", "wb") as f:
        f.truncate(800 * 2**20)  # 800 MB, sparse
    start = time.monotonic()
    with pytest.raises(RunDirError, match="not a preview this tool wrote"):
        run.load_samples(1)
    assert time.monotonic() - start < 1


def test_a_dangling_link_named_like_the_next_run_is_stepped_over(tmp_path):
    from datetime import datetime, timedelta

    cfg = load_preset("gaussian-quick")
    now = datetime.now()
    for s in range(3):  # this second's name and the next ones', all dangling links
        stamp = (now + timedelta(seconds=s)).strftime("%Y%m%d-%H%M%S")
        (tmp_path / f"gaussian-quick-{stamp}").symlink_to(tmp_path / "nowhere")
    run = RunDir.create(tmp_path, cfg)
    assert run.path.is_dir() and not run.path.is_symlink()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6])
def test_ctrl_c_while_starting_prints_one_line(tmp_path, delay):
    """Before the run's own handler is in place (imports, the preset, the checks) or just after: exit 130,
    no traceback. gaussian-quick: numpy only, as numba's C import turns an interrupt into an ImportError."""
    sets = ["--set", "experiment.generations=100000"]  # it cannot finish before the signal
    proc = cli("--batch", "gaussian-quick", *sets, "--runs-dir", "runs", cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # 130 from our handlers; -SIGINT when the interpreter ends by the signal itself (still no traceback)
    assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in err, err


SIGNAL_INSIDE_A_LOCK = """
import signal, sys
from collapse_tui import loop
from collapse_tui.cli import main

check, calls = loop.Control.check, []


def check_once_interrupted(self):  # a few generations in, the signal comes while check holds its lock
    calls.append(1)
    if len(calls) == 200:
        with self._go._cond:
            signal.raise_signal(signal.SIGINT)
    return check(self)


loop.Control.check = check_once_interrupted
sys.exit(main(["--batch", "gaussian-quick", "--set", "experiment.generations=100000", "--runs-dir", "runs"]))
"""


def test_ctrl_c_while_the_loop_holds_a_lock_stops_at_a_checkpoint(tmp_path):
    """A signal handler runs on the main thread between two bytecodes, there inside Control.check's
    Event.wait. Taking that Event's lock from the handler waited on itself forever (seen once in a
    fresh-clone suite as a hung Ctrl-C): the stop must get through, the run end "stopped" at a checkpoint."""
    proc = spawn(
        [sys.executable, "-c", SIGNAL_INSIDE_A_LOCK],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "stopping (SIGINT)" in out
    (run,) = (tmp_path / "runs").iterdir()
    status = RunDir(run).read_status()
    assert status["state"] == "stopped" and status["checkpoint_generation"] >= 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_the_app_stops_its_run_at_a_checkpoint_on_sigterm_and_sighup(tmp_path, sig):
    import asyncio

    from collapse_tui.tui.app import build_app

    runs = tmp_path / "runs"

    async def go() -> None:
        app = build_app("gaussian-quick", ["experiment.generations=100000"], runs)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("enter")
            await wait_for(pilot, lambda: running_past(runs) is not None, "a finished generation", 120)
            os.kill(os.getpid(), sig)
            for _ in range(400):
                await pilot.pause(0.05)
                if not app.is_running:
                    break

    asyncio.run(go())
    (path,) = runs.glob("[!.]*")
    status = RunDir(path).read_status()
    assert status["state"] == "stopped" and status["checkpoint_generation"] == status["generation"] > 0


def test_metrics_rows_round_trip_and_the_summary_reads_only_the_first_and_last_generation(tmp_path):
    run = RunDir(tmp_path)
    rows = [
        {"seed": s, "generation": g, "nll": 1.5 * g + s, "w": [0.25, float("inf")]} for g in range(4) for s in (7, 8)
    ]
    run.append_metrics(rows[:2])
    run.append_metrics(rows[2:])
    back = run.read_metrics()
    assert [r["nll"] for r in back] == [r["nll"] for r in rows] and back[0]["w"] == [0.25, None]  # inf: null
    ends = [r for r in back if r["generation"] in (0, 3)]
    assert run.read_metrics_ends() == ends
    damaged = run.metrics_path.read_bytes().replace(b'"seed":8,"generation":1', b'"seed":8,"generation":"x"')
    assert damaged != run.metrics_path.read_bytes()
    run.metrics_path.write_bytes(damaged)
    assert run.read_metrics_ends() == ends  # the lines between are not parsed
    with pytest.raises(RunDirError, match="line 4"):
        run.read_metrics()
    run.write_metrics(back[:1])
    assert run.read_metrics_ends() == back[:1]
