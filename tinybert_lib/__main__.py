"""Command line: ``python -m tinybert_lib data prepare``, ``... run STAGE`` and ``... predict MODEL TEXT``.

Tooling: not taught (setup and command line: ``data`` runs :mod:`~tinybert_lib.data_setup`, ``run``
:mod:`~tinybert_lib.cli`, ``predict`` :mod:`~tinybert_lib.predict_cli`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m tinybert_lib {data,run,predict} ...  (add --help after a command for its options)"
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "data":
        from .data_setup import main as data_main

        return data_main(rest)
    if command == "run":
        from .cli import main as run_main

        return run_main(rest)
    if command == "predict":
        from .predict_cli import main as predict_main

        return predict_main(rest)
    print(f"unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
