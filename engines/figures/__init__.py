"""The built-in engines' report figures: one module per engine, the one its class names in `figures`,
each with FIGURES (a tuple of collapse_tui.report.figures.Spec). These are the only engine modules that
may import the core, and then only the report's submodules (the helpers are in collapse_tui.report.figures).
The report imports a module when it draws a run of that engine, so heavy imports (torch) go inside functions.
"""
