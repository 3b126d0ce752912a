"""Built-in presets (TOML files), installed with the package as collapse_tui.presets."""
