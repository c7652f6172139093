"""`python -m bench {train,serve,smoke,chaos} [args]`: dispatch to one benchmark module."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {"train": "bench.train", "serve": "bench.serve", "smoke": "bench.serve", "chaos": "bench.chaos"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m bench {{{','.join(COMMANDS)}}} [args]", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
