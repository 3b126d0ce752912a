"""What the benchmark scripts print about the machine they ran on (imported as `machine` from bench/)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), load {load}"


def torch_device(device) -> str:
    """A GPU's name, or the CPU with torch's thread count; and the torch version."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
