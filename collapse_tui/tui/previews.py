"""What a sample pane draws for each preview kind an engine declares (Engine.preview_kind).

A kind with no drawing here, a plugin's own say, gets one muted line: its samples stay on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from textual.content import Content

from ..engines import EngineError, engine_class
from ..engines.text_data import split_prompt
from ..numbers import fmt
from . import render

UNKNOWN = "unknown"  # the kind of an engine that does not load


@dataclass(frozen=True)
class Drawing:
    body: Content
    subtitle: str = ""
    plot: bool = False  # characters laid out in 2-D: no wrapping at their blanks


# (samples, generation 0's samples (shared scales), width, height, highlighted prompt) -> drawing
Draw = Callable[[Any, Any, int, int, int], Drawing]


def points(samples: np.ndarray, first: Any, width: int, height: int, prompt: int) -> Drawing:
    """A histogram (1-D) or a density map, both panes on generation 0's scale."""
    limits = render.extent(first if first is not None and len(first) else samples)
    lines = render.density(samples, width, height, limits)
    pts = np.asarray(samples, dtype=float).reshape(len(samples), -1)
    var = float(pts.var(0, ddof=1).sum()) if len(samples) > 1 else 0.0
    return Drawing(Content("\n".join(lines)), f"n={len(samples)} var {fmt(var)}", plot=True)


def images(samples: np.ndarray, first: Any, width: int, height: int, prompt: int) -> Drawing:
    shown = render.digit_layout(samples.shape, width, height)[1]
    subtitle = f"{shown} of {len(samples)} images" if shown < len(samples) else f"{len(samples)} images"
    return Drawing(Content("\n".join(render.digits(samples, width, height))), subtitle, plot=True)


PROMPT_WORDS = 12  # how much of a prompt the pane shows before its continuation


def text(samples: list[str], first: Any, width: int, height: int, prompt: int) -> Drawing:
    """Every sample: the end of its prompt, muted, then its continuation with repeated phrases marked;
    the prompt the diff shows in reverse."""
    parts = []
    for i, entry in enumerate(samples):
        head, continuation = split_prompt(entry)
        part = Content.styled(f"#{i + 1} ", "reverse bold" if i == prompt else "bold")
        if head:
            words = head.split()
            shown = " ".join(words[-PROMPT_WORDS:])
            part += Content.styled(("… " if len(words) > PROMPT_WORDS else "") + shown, "$text-muted") + Content("\n→ ")
        parts.append(part + render.highlighted(tidy(continuation)))
    return Drawing(Content("\n\n").join(parts) if parts else Content("(empty)"), f"{len(samples)} prompts")


def tidy(text: str) -> str:
    """Text with its raw line breaks kept but no blank lines (WikiText's rows end in " \\n \\n")."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


DRAWINGS: dict[str, Draw] = {"points": points, "images": images, "text": text}


def preview_kind(engine: str) -> str:
    """The engine's declared preview kind; UNKNOWN when the engine does not load."""
    try:
        return getattr(engine_class(engine), "preview_kind", UNKNOWN)
    except EngineError:
        return UNKNOWN


def draw(kind: str, samples: Any, first: Any, width: int, height: int, prompt: int = 0) -> Drawing:
    drawing = DRAWINGS.get(kind)
    if drawing is None:
        line = f"no drawing for preview kind {kind!r} (samples on disk in samples/)"
        return Drawing(Content.styled(line, "$text-muted"))
    return drawing(samples, first, width, height, prompt)
