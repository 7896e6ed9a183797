"""``ensemble``: the Ensemble command line (bootstrap, status, destroy-environment come with the provider)."""

from __future__ import annotations

import argparse
import sys

from .. import __version__

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ensemble", description="Ensemble service orchestration on bare metal")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    parser.add_subparsers(dest="command", title="commands")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
