"""The Textual app: the only part of collapse-tui that imports textual."""
