"""The dialog b opens on a run screen: the keys a branch from the generation shown changes in the run's
preset (branch.py), as --set would: enter branches, esc goes back."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ..branch import FREE


class BranchDialog(ModalScreen[str | None]):
    """Dismissed with the overrides as typed (KEY=VALUE ...), or None."""

    BINDINGS = [Binding("escape", "cancel", "Back")]

    def __init__(self, run_name: str, at: int, overrides: str):
        super().__init__()
        self.run_name, self.at, self.overrides = run_name, at, overrides

    def compose(self) -> ComposeResult:
        with Vertical(id="branch-box"):
            yield Static(f"Branch {self.run_name} at generation {self.at}: its generations 0..{self.at}, then")
            yield Input(self.overrides, id="branch-overrides")
            yield Static(
                f"KEY=VALUE ... of {FREE} · enter: branch · esc: back",
                id="branch-help",
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
