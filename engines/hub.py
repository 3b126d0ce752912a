"""Whether the Hugging Face hub can be reached, asked once and quickly before a run directory exists, so
that an offline machine gets one line saying what to set instead of half a minute of retries."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

PROBE_SECONDS = 3.0


def offline() -> bool:
    """The user asked the Hugging Face libraries to use their cache only."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@functools.cache
def unreachable() -> str:
    """Why the hub (HF_ENDPOINT, default huggingface.co) cannot be reached, or '' when it can."""
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=PROBE_SECONDS).close()
    except OSError as e:
        return f"{url.hostname}:{port}: {e.strerror or type(e).__name__}"
    return ""


def hub_problems(needs: list[tuple[str, str]], alternatives: Mapping[str, str]) -> list[str]:
    """A line for each (key, what) of an engine's hub_needs() when the hub cannot be reached, with what to do
    instead (alternatives[key]). With HF_HUB_OFFLINE set the cache is trusted: a missing copy fails later,
    with the engine's own one-line message."""
    why = "" if offline() or not needs else unreachable()
    return [
        f"{key}: {what} comes from the Hugging Face hub, which cannot be reached ({why}); {alternatives[key]}, "
        "or set HF_HUB_OFFLINE=1 to use a copy in the Hugging Face cache"
        for key, what in needs
        if why
    ]


def hub_cli() -> str:
    """The Hugging Face command line installed here, as the user would type it: `hf` (huggingface_hub 0.34
    on; 1.0 dropped `huggingface-cli`), else `huggingface-cli`; by name when on PATH, else its path beside
    this Python (a virtual environment not activated); '' when there is neither."""
    for name in ("hf", "huggingface-cli"):
        beside, on_path = Path(sys.executable).parent / name, shutil.which(name)
        if beside.is_file():  # this environment's own
            return name if on_path and Path(on_path).samefile(beside) else str(beside)
        if on_path:
            return name
    return ""


def download_command(repo: str) -> str:
    """How to download the hub repository repo into a folder DIR with what is installed."""
    cli = hub_cli()
    command = f"{cli or 'hf'} download {repo} --local-dir DIR"
    return command if cli else f"pip install huggingface_hub, then {command}"
