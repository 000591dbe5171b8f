"""Entry point of the `mrgfast` command: dispatches to one module per subcommand.

Subcommand modules import their heavy dependencies (torch, transformers) inside their handlers,
so `mrgfast --help` and the reward commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order shown in --help. Each module defines add_parser(subparsers) and sets func=handler(args) -> int.
COMMANDS = ("demo", "label", "score", "agree", "train", "eval", "data", "model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrgfast",
        description="Fast, clinically aligned GRPO training for radiology report generation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mrgfast.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"mrgfast.cli.{name}":
                continue  # command not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mrgfast ... | head`: the reader left; exit quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
