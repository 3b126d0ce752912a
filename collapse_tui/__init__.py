"""collapse-tui: a terminal workbench for model-collapse experiments."""

__version__ = "0.1.0"
