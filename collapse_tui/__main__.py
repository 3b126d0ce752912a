import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line itself loads: no traceback
    print("collapse-tui: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
