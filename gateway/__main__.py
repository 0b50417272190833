"""`python -m gateway` runs the gateway headless, like `ringside serve`."""

from __future__ import annotations

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
