"""Command line: ``python -m tinybert_lib data prepare``, ``... run STAGE`` and ``... predict MODEL TEXT``.

Tooling: not taught (setup and command line: ``data`` runs :mod:`~tinybert_lib.data_setup`, ``run``
:mod:`~tinybert_lib.cli`, ``predict`` :mod:`~tinybert_lib.predict_cli`).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; a course error or Ctrl-C is one line, unless ``--debug`` / ``TINYBERT_DEBUG=1``."""
    from .errors import CourseError, debug_enabled

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ["TINYBERT_DEBUG"] = "1"
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        print("interrupted; nothing was left half-written: rerun the same command to go on.", file=sys.stderr)
        return 130
    except CourseError as err:
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


def _dispatch(argv: list[str]) -> int:
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
