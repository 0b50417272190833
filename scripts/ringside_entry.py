"""PyInstaller entry point for the single-file `ringside` executable."""

import sys

from ringside_tui.cli import main

if __name__ == "__main__":
    sys.exit(main())
