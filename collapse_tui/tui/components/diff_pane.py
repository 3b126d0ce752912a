"""Generation 0 against generation n: for text, the text metrics that moved, the phrases most prompts'
continuations share, the phrases repeated inside a continuation and a word diff of the continuations;
every metric otherwise."""

from __future__ import annotations

import math
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.reactive import var
from textual.widgets import Static

from ...engines.text_data import split_prompt
from ...numbers import NA
from ...phrases import SHARED_MIN_WORDS, compare, shared_phrases, texts_holding, word_diff
from ...summary import change_text, value_text
from ..state import ScreenState

MARKS = {"appeared": "+", "grew": ">", "shrank": "<", "vanished": "-"}
# the text engines' metrics of what their samples repeat and keep (engines/text_metrics.py)
TEXT_KEYS = (
    *("cross_rep", "distinct_conts", "self_bleu", "unigram_js"),  # across prompts (engines/cross_prompt.py)
    *("rep4", "distinct_1", "distinct_2", "distinct_3", "types_lost", "singletons_lost", "support"),
)


class DiffPane(VerticalScroll):
    done = var(0)  # bound to the run screen's: the metrics follow every finished generation

    def __init__(self, run_state: ScreenState, kind: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.run_state, self.kind = run_state, kind
        # what the sample panes show: n, generation 0's samples, generation n's, the prompt
        self.compared: tuple[int | None, Any, Any, int] = (None, None, None, 0)

    def compose(self) -> ComposeResult:
        yield Static(id="diff-body")

    def compare(self, n: int | None, first: Any, other: Any, prompt: int) -> None:
        """What the sample panes now show."""
        self.compared = (n, first, other, prompt)
        self._draw()

    def watch_done(self) -> None:
        self._draw()

    def _draw(self) -> None:
        n, first, other, prompt = self.compared
        text = self.kind == "text" and n is not None and first is not None and other is not None
        self.query_one("#diff-body", Static).update(self._text(n, first, other, prompt) if text else self._metrics(n))

    def _metrics(self, n: int | None) -> Content:
        """Every metric's median over seeds at generation 0 and n, and the change (summary.py's)."""
        medians = self.run_state.medians
        if not medians:
            return Content.styled("no generation to compare yet", "$text-muted")
        n = n if n is not None and n < len(medians) else len(medians) - 1
        head = f"{'metric':<16}{'gen 0':>12}{f'gen {n}':>12}{'change':>12}"
        lines = [Content.styled(head, "bold")]
        for key, a in medians[0].items():
            b = medians[n].get(key)
            after = value_text(b.centre, b.log) if b else NA
            moved = change_text(a, b) if b else NA
            lines.append(Content(f"{key[:15]:<16}{value_text(a.centre, a.log):>12}{after:>12}{moved:>12}"))
        return Content("\n").join(lines)

    def _moved(self, n: int) -> list[Content]:
        """The text metrics whose median over seeds changed from generation 0 to n."""
        medians = self.run_state.medians
        if n >= len(medians):
            return []
        lines = []
        for key in TEXT_KEYS:
            a, b = medians[0].get(key), medians[n].get(key)
            if a is not None and b is not None and a.centre != b.centre and not math.isnan(a.centre + b.centre):
                before, after = value_text(a.centre, a.log), value_text(b.centre, b.log)
                lines.append(Content(f"{key:<16}{before:>10} -> {after:<10}{change_text(a, b)}"))
        if not lines:
            return []
        return [Content.styled(f"text metrics that moved, generation 0 -> {n}", "bold"), *lines, Content("")]

    def _shared(self, n: int, before: list[str], after: list[str]) -> list[Content]:
        """The phrases the most continuations of generation n share, with how many held them at generation 0."""
        head = f"phrases shared by prompts, generation 0 -> {n} (of the {len(after)} shown)"
        out = [Content.styled(head, "bold")]
        shared = shared_phrases(after)
        if not shared:
            out.append(Content.styled(f"no phrase of {SHARED_MIN_WORDS}+ words in two continuations", "$text-muted"))
        for ph in shared:
            out.append(
                Content(f"{texts_holding(before, ph.key):>3} -> {ph.texts:<3} ") + Content.styled(ph.text, "bold")
            )
        return [*out, Content("")]

    def _text(self, n: int, first: list[str], other: list[str], prompt: int) -> Content:
        before, after = ([split_prompt(t)[1] for t in texts] for texts in (first, other))
        changes = compare(before, after)
        out = [*self._moved(n), *self._shared(n, before, after)]
        out.append(Content.styled(f"phrases repeated inside a continuation, generation 0 -> {n}", "bold"))
        if not changes:
            out.append(Content.styled("none appeared, grew, shrank or vanished", "$text-muted"))
        for c in changes:
            line = Content(f"{MARKS[c.kind]} {c.kind:<8} {c.before:>3} -> {c.after:<3} ")
            out.append(line + Content.styled(c.text, "bold" if c.kind in ("appeared", "grew") else ""))
        out.append(Content(""))
        out.append(
            Content.styled(f"word diff of continuation #{prompt + 1}: [-generation 0-] {{+generation {n}+}}", "bold")
        )
        a = before[prompt] if prompt < len(before) else ""
        b = after[prompt] if prompt < len(after) else ""
        pieces = []
        for op, text in word_diff(a, b):
            if op == "equal":
                pieces.append(Content(text))
            elif op == "delete":
                pieces.append(Content.styled(f"[-{text}-]", "strike $error"))
            else:
                pieces.append(Content.styled(f"{{+{text}+}}", "bold $success"))
        out.append(Content(" ").join(pieces))
        return Content("\n").join(out)
