"""Branches (collapse_tui/branch.py): `--batch PRESET --from RUN --at K` and b on a run screen make a run whose
generations 0..K are RUN's and whose later ones are PRESET's, computed here against a loop written out by hand
from the engine's own calls; the refusals (one line, exit 2, no run directory); and --resume RUN
--generations N on an engine that trains one seed at a time (gaussian and gmm: tests/hostile/test_hostile_layout.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
from conftest import make_run, run_async, spawn, wait_for

from collapse_tui.branch import Origin, read_origin
from collapse_tui.cli import main
from collapse_tui.datamodes import next_data
from collapse_tui.engines.gaussian import GaussianEngine
from collapse_tui.files import json_lines
from collapse_tui.records import RunDirError
from collapse_tui.rundir import RunDir
from collapse_tui.tui.app import build_app
from collapse_tui.tui.branch_dialog import BranchDialog
from collapse_tui.tui.run_screen import RunScreen

SEEDS, SAMPLES, GENERATIONS, AT = 50, 20, 12, 5
RUN_SETS = (f"experiment.generations={GENERATIONS}", f"experiment.seeds={SEEDS}")  # gaussian-quick: M = 20, 1-D
BRANCH_GENERATIONS = 14


def lines(run: Path) -> list[str]:
    return (run / "metrics.jsonl").read_text().splitlines()


def branch(root: Path, parent: Path, at: int, *sets: str) -> Path:
    """`--batch gaussian-quick --from parent --at at --set ...` in a fresh runs folder; the branch's path."""
    runs = root / f"branches-{len(list(root.iterdir()))}"
    args = ["--batch", "gaussian-quick", "--from", str(parent), "--at", str(at), "--runs-dir", str(runs)]
    for s in (*RUN_SETS[1:], f"experiment.generations={BRANCH_GENERATIONS}", *sets):
        args += ["--set", s]
    assert main(args) == 0
    (path,) = runs.iterdir()
    return path


def quiet(*_: object) -> None:
    pass


def by_hand(mode: str, at: int, generations: int, modes: tuple[tuple[int, str], ...] = ()) -> list[dict]:
    """The rows of gaussian-quick's seeds when the data of generations 1..at+1 are drawn in replace mode and
    those after in `mode` (modes: more (generation, mode) switches after it): the loop written out from the
    engine's calls and datamodes.next_data (generation n fits D_n, samples M points, is measured against
    generation 0's model; D_{n+1} drawn by the mode of the last switch before n + 1)."""
    switches = ((0, "replace"), (at + 1, mode), *modes)
    engine = GaussianEngine({"dim": 1, "samples": SAMPLES})
    seeds = list(range(SEEDS))
    rngs = [np.random.default_rng(s) for s in seeds]
    real = engine.real_data(rngs)
    data = pool = real
    model = reference = None
    rows = []
    for gen in range(generations):
        fitted = engine.fit(data, rngs, quiet, source=model)
        model = fitted.model
        samples = engine.sample(model, SAMPLES, rngs, quiet, data=data).samples
        reference = model if gen == 0 else reference
        metrics = engine.evaluate(model, samples, reference)
        rows += [
            {"seed": s, "generation": gen, "train_size": data.shape[1], **m, **fitted.losses}
            for s, m in zip(seeds, metrics)
        ]
        data, pool = next_data(
            [m for start, m in switches if start <= gen][-1],
            prev=data,
            pool=pool,
            real=real,
            samples=samples,
            rngs=rngs,
            keep_fraction=0.1,
            fresh_fraction=0.1,
            draw_fresh=lambda k: engine.real_data(rngs, k),
        )
    # detector_auc: the detector's own generators and folds (tests/test_detector.py checks its numbers)
    return [json.loads(line) | {"detector_auc": ANY} for line in json_lines(rows).splitlines()]


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """gaussian-quick in replace mode, 12 generations, 50 seeds: its one checkpoint is at generation 11. Made
    in this process, which lets its lock go: another process may take it."""
    path = make_run(tmp_path_factory.mktemp("parent"), "gaussian-quick", *RUN_SETS)
    RunDir(path).release()
    return path


def files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "lock"}


@pytest.mark.parametrize("mode", ["accumulate", "keep"])
def test_a_branch_is_its_parent_to_k_then_its_own_preset(tmp_path, parent, mode):
    """Branched at 5 into accumulate (the training set grows by M a generation) or keep (10% real data, drawn
    with the seeds' RNGs: a wrong RNG state restored changes every row after 5): rows 0..5 are the parent's,
    line for line; every row 0..13 equals the loop written out by hand (replace to D_6, then the mode); the
    branch from the parent's recomputed generations equals the branch from a run whose checkpoint is at 5."""
    before = files(parent)
    recomputed = branch(tmp_path, parent, AT, f"data.mode={mode}")
    assert lines(recomputed)[: SEEDS * (AT + 1)] == lines(parent)[: SEEDS * (AT + 1)]
    assert [json.loads(line) for line in lines(recomputed)] == by_hand(mode, AT, BRANCH_GENERATIONS)
    sizes = {json.loads(line)["train_size"] for line in lines(recomputed)[-SEEDS:]}
    assert sizes == ({SAMPLES * (BRANCH_GENERATIONS - AT - 1)} if mode == "accumulate" else {SAMPLES})

    short = make_run(tmp_path, "gaussian-quick", "experiment.generations=6", f"experiment.seeds={SEEDS}")
    assert RunDir(short).read_checkpoint()[0] == AT  # the state after 5 is copied, not computed
    assert lines(branch(tmp_path, short, AT, f"data.mode={mode}")) == lines(recomputed)

    assert read_origin(RunDir(recomputed)) == Origin(parent.resolve(), AT)
    assert json.loads((recomputed / "run.json").read_text()) == {"parent": str(parent.resolve()), "at": AT}
    assert RunDir.open(recomputed).config().data.mode == mode
    assert files(parent) == before  # the parent as it was
    assert not list(tmp_path.glob("*/.branch-*"))  # the recomputation's folder is gone


@pytest.mark.parametrize(
    "preset, sets, at, said",
    [
        ("gmm-quick", [], AT, "changes experiment.engine ('gaussian' -> 'gmm'); engine.dim (1 -> 2)"),
        ("gaussian-quick", ["engine.samples=30"], AT, "this preset changes engine.samples (20 -> 30) (a branch may"),
        (
            "gaussian-quick",
            ["experiment.seeds=3"],
            AT,
            "changes experiment.seeds ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9… -> [0, 1, 2]) (a",
        ),
        ("gaussian-quick", [], GENERATIONS, f"--at {GENERATIONS}: {{}} has finished generations 0..{GENERATIONS - 1}"),
        ("gaussian-quick", [], -1, "--at: expected a generation >= 0, got -1"),
        ("gaussian-quick", ["experiment.generations=6"], AT, "experiment.generations: 6 leaves no generation after 5"),
    ],
)
def test_a_branch_that_cannot_be_made_is_one_line_and_no_run(tmp_path, parent, capsys, preset, sets, at, said):
    """Another engine, a key of the engine, other seeds, a generation the parent has not finished, one below 0,
    no generation left to run: one line, exit 2, no run directory."""
    runs = tmp_path / "runs"
    args = ["--batch", preset, "--from", str(parent), "--at", str(at), "--runs-dir", str(runs)]
    capsys.readouterr()
    assert main([*args, *(a for s in [f"experiment.seeds={SEEDS}", *sets] for a in ("--set", s))]) == 2
    said = said.format(parent)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err
    assert not runs.exists() or not list(runs.iterdir())


def test_what_is_not_a_run_or_not_whole_is_refused(tmp_path, parent, capsys):
    """A folder that is not a run; --from without --at; a parent whose rows its preset does not give again
    (a value changed at generation 3): one line, exit 2, no run directory and no recomputation left."""
    runs = tmp_path / "runs"
    tail = ["--runs-dir", str(runs), "--set", f"experiment.seeds={SEEDS}"]
    cases = [
        (["--from", str(tmp_path), "--at", "1"], f"{tmp_path}: not a run directory (no preset.toml)"),
        (["--from", str(parent)], "--from RUN_DIR and --at K go together"),
    ]
    changed = tmp_path / "changed"
    subprocess.run(["cp", "-r", str(parent), str(changed)], check=True)
    rows = [json.loads(line) for line in lines(changed)]
    rows[3 * SEEDS]["variance"] *= 1.5
    (changed / "metrics.jsonl").write_bytes(json_lines(rows))
    cases.append((["--from", str(changed), "--at", str(AT)], "generation 3, seed 0 first"))
    for args, said in cases:
        capsys.readouterr()
        assert main(["--batch", "gaussian-quick", *args, *tail]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and said in err[0], err
        assert not runs.exists() or not list(runs.iterdir())


def test_a_run_another_process_writes_is_not_branched(tmp_path, parent, capsys):
    """The parent's lock held by another live process: one line naming it, exit 2, no run directory."""
    code = f"import pathlib; from collapse_tui import locks; locks.acquire(pathlib.Path({str(parent)!r}))"
    holder = spawn(
        [sys.executable, "-c", f"{code}; print('held', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "held\n"
    runs = tmp_path / "runs"
    capsys.readouterr()
    args = ["--batch", "gaussian-quick", "--from", str(parent), "--at", "11", "--runs-dir", str(runs)]
    assert main([*args, "--set", f"experiment.seeds={SEEDS}", "--set", "experiment.generations=20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another process (pid {holder.pid}) is writing this run" in err
    assert not runs.exists() or not list(runs.iterdir())


@run_async
async def test_b_branches_from_the_generation_shown(tmp_path, parent):
    """b on a finished run's screen, two generations back from the last one shown ([ [): the dialog's keys
    changed in the run's preset; a key of the engine is refused in a notification, with no run made; else the
    branch opens on a run screen of its own, runs, and its rows up to 9 are the parent's and after it the
    hand-written loop's."""
    runs = tmp_path / "runs"
    app = build_app(str(parent), [], runs)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_state.done == GENERATIONS
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BranchDialog), what="the dialog")
        await pilot.press("home", "ctrl+k", *"engine.samples=30", "enter")
        said = "this preset changes engine.samples (20 -> 30)"
        await wait_for(pilot, lambda: any(said in n.message for n in app._notifications), what="the refusal")
        assert app.screen is screen and (not runs.exists() or not list(runs.iterdir()))
        await pilot.press("left_square_bracket", "left_square_bracket", "b")
        await wait_for(pilot, lambda: isinstance(app.screen, BranchDialog), what="the dialog")
        assert app.screen.at == 9 and app.screen.query_one("Input").value == (
            f"data.mode=accumulate experiment.generations={GENERATIONS}"
        )
        await pilot.press("home", "ctrl+k", *f"data.mode=keep experiment.generations={BRANCH_GENERATIONS}", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen is not screen, what="branch")
        branched = app.screen
        await wait_for(pilot, lambda: not branched.live and branched.run_state.state == "finished", what="its end")
    assert read_origin(branched.rundir).at == 9 and branched.rundir.path.parent == runs
    assert [json.loads(line) for line in lines(branched.rundir.path)] == by_hand("keep", 9, BRANCH_GENERATIONS)


def test_a_branch_of_a_branch(tmp_path, parent):
    """A branch (keep from 5, 14 generations, its checkpoint at 13) branched at 9 into accumulate: generations
    0..9 computed again as the parent branched at 5 and run on in keep mode; at 3 (before it branched): the
    parent's generations. Both against the hand-written loop."""
    first = branch(tmp_path, parent, AT, "data.mode=keep")
    later = branch(tmp_path, first, 9, "data.mode=accumulate")
    assert lines(later)[: SEEDS * 10] == lines(first)[: SEEDS * 10]
    rows = [json.loads(line) for line in lines(later)]
    assert rows == by_hand("keep", AT, BRANCH_GENERATIONS, ((10, "accumulate"),))
    assert read_origin(RunDir(later)) == Origin(first.resolve(), 9)
    earlier = branch(tmp_path, first, 3, "data.mode=accumulate")
    assert [json.loads(line) for line in lines(earlier)] == by_hand("accumulate", 3, BRANCH_GENERATIONS)


def test_a_run_json_this_tool_did_not_write_is_named(tmp_path):
    (tmp_path / "preset.toml").write_text("")
    assert read_origin(RunDir(tmp_path)) is None
    for text in ('{"parent": "/x", "at": -1}', '{"parent": 3, "at": 1}', "[1]", '{"at": true, "parent": "/x"}'):
        (tmp_path / "run.json").write_text(text)
        with pytest.raises(RunDirError, match=f"^{tmp_path / 'run.json'}: expected"):
            read_origin(RunDir(tmp_path))


VAE = {
    "source": "digits",
    "train_count": 200,
    "test_count": 50,
    "latent": 2,
    "capacity": 4,
    "epochs": 1,
}


def test_resume_generations_and_a_branch_of_an_engine_that_trains_seed_by_seed(tmp_path):
    """vae (batched = False: a model per seed, here 2): a run of 2 generations extended by --resume
    --generations 3 has the rows of a run of 3, line for line; so has a branch of it at 0 that changes nothing
    (its checkpoint is at 2: generation 0 computed again, then each seed's torch model and RNG restored)."""
    pytest.importorskip("torch")
    sets = ["experiment.seeds=2", *(f"engine.{k}={json.dumps(v)}" for k, v in VAE.items())]
    straight = make_run(tmp_path, "vae-quick", "experiment.generations=3", *sets)
    extended = make_run(tmp_path, "vae-quick", "experiment.generations=2", *sets)
    assert main(["--batch", "--resume", str(extended), "--generations", "3"]) == 0
    assert lines(extended) == lines(straight) and len(lines(straight)) == 6

    runs = tmp_path / "branch"
    args = ["--batch", "vae-quick", "--from", str(straight), "--at", "0", "--runs-dir", str(runs)]
    assert main([*args, *(a for s in [*sets, "experiment.generations=3"] for a in ("--set", s))]) == 0
    (branched,) = runs.iterdir()
    assert lines(branched) == lines(straight)
