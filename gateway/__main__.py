"""`python -m gateway [serve] [options]` runs the gateway headless, like `ringside serve`;
`python -m gateway backup|restore|migrate ...` are the data commands of `ringside`."""

from __future__ import annotations

import sys

from gateway.cli import DATA_COMMANDS, main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] not in ("serve", *DATA_COMMANDS, "--version", "-h", "--help"):
        args = ["serve", *args]
    sys.exit(main(args))
