"""`python -m gateway [serve] [options]` runs the gateway headless, like `ringside serve`."""

from __future__ import annotations

import sys

from gateway.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] not in ("serve", "--version", "-h", "--help"):
        args = ["serve", *args]
    sys.exit(main(args))
