"""The Textual app: `collapse-tui [PRESET | PRESETS_FOLDER | RUN_DIR | SWEEP_DIR]` without --batch.

Bad input raises ConfigError in build_app, before the app takes the terminal, so the CLI prints
one line and exits 2. Importing this module and drawing the start screen loads no torch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from ..checkpoints import open_for_resume
from ..config import ConfigError
from ..preset_files import read_preset
from ..records import RunState
from ..rundir import RunDir
from ..stopsignals import catchable
from ..sweep import is_sweep, read_target
from ..sweepdir import SweepDir, is_sweep_dir
from .components.preset_table import PresetEntry, builtin_entries, folder_entries
from .start import StartScreen

DEFAULT_PRESET = "gmm"
HANG_UP_GRACE = 5.0  # seconds the app has to exit by itself after a hang-up, once no run is live


class CollapseApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "collapse-tui"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        entries: list[PresetEntry],
        selected: Path,
        overrides: list[str] = (),
        runs_dir: Path = Path("runs"),
        open_run: RunDir | None = None,
        resume: bool = False,
        open_sweep: SweepDir | None = None,
    ):
        super().__init__()
        self.entries, self.selected, self.overrides, self.runs_dir = entries, selected, list(overrides), runs_dir
        self.open_run, self.resume_now, self.open_sweep = open_run, resume, open_sweep
        self.quitting = False  # waiting for the loop to checkpoint before exiting
        self._sighup: signal.Handlers | Callable | None = None  # SIGHUP's handler before ours

    def on_mount(self) -> None:
        # a server's shutdown (SIGTERM) or a dropped SSH session (SIGHUP): quit as q does, so a running
        # run stops at a checkpoint and records "stopped"; unless the app started with them ignored (nohup)
        loop = asyncio.get_running_loop()
        if signal.SIGTERM in catchable():
            loop.add_signal_handler(signal.SIGTERM, lambda: self.call_later(self.action_quit))
        # not the loop's handler: this one runs even while the app's thread waits on a full output queue
        if signal.SIGHUP in catchable():
            self._sighup = signal.signal(signal.SIGHUP, lambda *_: self.hang_up(loop))
        self.push_screen(StartScreen(self.entries, self.selected, self.overrides, self.runs_dir))
        if self.open_sweep is not None:
            from .sweep_screen import SweepScreen

            self.push_screen(SweepScreen(self.open_sweep))
        if self.open_run is not None:
            from .run_screen import RunScreen

            start = "resume" if self.resume_now else "browse"
            self.push_screen(RunScreen(self.open_run, self.open_run.config(), start=start))

    def on_unmount(self) -> None:
        if self._sighup is not None:
            signal.signal(signal.SIGHUP, self._sighup)

    def hang_up(self, loop: asyncio.AbstractEventLoop) -> None:
        """The terminal is gone. Its output goes to /dev/null from now on, the app quits as q does, and
        the process ends HANG_UP_GRACE seconds after no run is live even if the app's exit never comes:
        Textual's writer thread dies at its first write to a closed terminal, and the app's thread then
        waits forever to queue output for it (seen when a tmux session is killed as the app starts).
        Headless (tests), only the quit."""
        loop.call_soon_threadsafe(self.call_later, self.action_quit)
        if self.is_headless:
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        threading.Thread(target=self._end_when_no_run_is_live, daemon=True, name="hang-up").start()

    def _end_when_no_run_is_live(self) -> None:
        from .run_screen import RunScreen

        while any(isinstance(s, RunScreen) and s.live for s in list(self.screen_stack)):
            time.sleep(0.2)  # the run's loop checkpoints and records "stopped" on its own thread
        time.sleep(HANG_UP_GRACE)
        os._exit(128 + signal.SIGHUP)

    async def action_quit(self) -> None:
        from .run_screen import RunScreen

        screen = self.screen
        if isinstance(screen, RunScreen) and screen.live and not self.quitting and screen.control is not None:
            self.quitting = True  # the worker's end exits the app (RunScreen.on_worker_state_changed)
            screen.action_stop()
            self.notify("stopping: saving a checkpoint (quit again to leave at once)")
            return
        failed = isinstance(screen, RunScreen) and screen.run_state.state == RunState.FAILED
        self.exit(1 if failed else 0)


def build_app(
    target: str | None,
    overrides: list[str] = (),
    runs_dir: Path = Path("runs"),
    resume: str | None = None,
    generations: int | None = None,
) -> CollapseApp:
    """Check the command line and build the app; raises ConfigError for anything wrong. generations: resume's
    new length for the run (--resume RUN_DIR --generations N)."""
    overrides = list(overrides)
    entries = builtin_entries(overrides)
    builtin = {e.name: e for e in entries}
    selected = builtin[DEFAULT_PRESET].path
    open_run: RunDir | None = None
    if resume:  # --resume RUN_DIR without --batch: open it and resume at once
        target = resume
    path = Path(target) if target else None
    if path is not None and is_sweep_dir(path) and not resume:
        if overrides:
            raise ConfigError(f"{target}: a sweep's presets are fixed; --set applies to presets only")
        return CollapseApp(entries, selected, overrides, runs_dir, open_sweep=SweepDir.open(path))
    read = read_target(target) if target else None  # a preset file named: read once
    if is_sweep(read):
        raise ConfigError(
            f"{target}: a sweep preset; sweeps run with collapse-tui --batch {target} (open the sweep directory here)"
        )
    if path is not None and path.is_dir():
        if (path / "preset.toml").is_file():
            if overrides:
                raise ConfigError(f"{target}: a run directory's preset is fixed; --set applies to presets only")
            open_run = RunDir.open(path)
            if resume:  # not if live
                open_for_resume(open_run, generations)
            open_run.config()  # a hand-edited preset.toml is checked like any other
            open_run.read_status(), open_run.read_metrics()  # and so are its other files
        elif resume:
            raise ConfigError(f"{target}: not a run directory (no preset.toml)")
        else:
            found = folder_entries(path, overrides)
            if not found:
                raise ConfigError(f"{target}: not a run directory (no preset.toml) and no presets (*.toml) in it")
            entries += found
            selected = found[0].path
    elif target:
        preset = read or read_preset(target)
        cfg = preset.config(overrides)  # errors now, not in the app
        if preset.path.resolve() not in {e.path.resolve() for e in entries}:
            entries.append(PresetEntry(preset.path.stem, preset.path, cfg, preset=preset))
        selected = next(e.path for e in entries if e.path.resolve() == preset.path.resolve())
    elif builtin[DEFAULT_PRESET].error is not None:
        raise ConfigError(builtin[DEFAULT_PRESET].error)
    return CollapseApp(entries, selected, overrides, runs_dir, open_run, resume=bool(resume))


def run_app(
    target: str | None, overrides: list[str], runs_dir: Path, resume: str | None = None, generations: int | None = None
) -> int:
    app = build_app(target, overrides, runs_dir, resume, generations)
    code = app.run()
    return code if isinstance(code, int) else (app.return_code or 0)
