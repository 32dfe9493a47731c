"""Where a lesson runs: in a checkout of the course, or anywhere else (Colab, a cloud notebook).

Lessons: 00-13 (each lesson's first code cell calls :func:`prepare_lesson`).

In a checkout (a folder holding ``tinybert_lib/`` and ``notebooks/``, found from the current folder
upwards) a lesson keeps its artifacts in ``<checkout>/build/<profile>/artifacts`` and reads the data
from ``<checkout>/data`` (``make data``). Anywhere else, with the course installed from its repository
(each lesson's first code cell does it), both go under ``./tinybert-build/`` in the current folder,
and the data are fetched there on first use: from ``$DATA_MIRROR`` when it is set, else from the
Hugging Face hub (:func:`~tinybert_lib.data_setup.prepare_data`).

:data:`REPOSITORY` names the course's GitHub repository, in this one place. The lessons' install
lines and the README's "Open in Colab" badges cannot import it (they run before the course is
installed), so they repeat it: ``python -m tinybert_lib.paths --sync`` rewrites them from the
constant, and ``tests/test_lesson_anywhere.py`` fails while one differs.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

#: The course's GitHub repository, ``owner/name``: set it here, then run
#: ``python -m tinybert_lib.paths --sync``.
#: (``OWNER/REPO`` is a placeholder: the lessons' install lines fail until a maintainer sets it.)
REPOSITORY = "OWNER/REPO"
#: The distribution name (pyproject.toml's ``[project] name``).
DISTRIBUTION = "tinybert_lib"
#: Outside a checkout, what the lessons write goes under this folder of the current folder.
LOCAL_BUILD = "tinybert-build"

# The repository as the install lines and the badges spell it: after "tinybert_lib @ git+https://github.com/"
# or "colab.research.google.com/github/", up to the next quote, slash, backslash (JSON's \"), "@", ")"
# or blank.
_REPOSITORY_IN_URL = re.compile(
    r"(tinybert_lib(?:\[[\w,]+\])? @ git\+https://github\.com/|colab\.research\.google\.com/github/)"
    r"([^/\\\s\"'@)]+/[^/\\\s\"'@)]+)")


def _is_checkout(folder: Path) -> bool:
    return (folder / "tinybert_lib" / "__init__.py").is_file() and (folder / "notebooks").is_dir()


def find_checkout(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The checkout of the course that holds ``start`` (default: the current folder), or None."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if _is_checkout(folder)), None)


def artifacts_dir(profile: str = "smoke", start: str | os.PathLike[str] | None = None) -> str:
    """Where a lesson run from ``start`` (default: the current folder) keeps ``profile``'s artifacts.

    ``<checkout>/build/<profile>/artifacts`` in a checkout, else
    ``<start>/tinybert-build/<profile>/artifacts``; relative to the current folder
    (``../build/smoke/artifacts`` from ``notebooks/``, as ``make run`` passes it).
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    checkout = find_checkout(here)
    folder = (checkout / "build" if checkout else here / LOCAL_BUILD) / str(profile) / "artifacts"
    try:
        return os.path.relpath(folder)
    except ValueError:  # another drive (Windows)
        return str(folder)


def default_data_dir() -> Path:
    """The data folder when ``$TINYBERT_DATA_DIR`` is not set.

    ``data/`` of the checkout this library is imported from (an editable install, ``make setup``), else of
    the checkout holding the current folder, else ``./tinybert-build/data``: never a folder inside an
    installed package.
    """
    library = Path(__file__).resolve().parents[1]
    checkout = library if _is_checkout(library) else find_checkout()
    return checkout / "data" if checkout else Path.cwd().resolve() / LOCAL_BUILD / "data"


def prepare_lesson(profile: str = "smoke", artifacts: str | os.PathLike[str] | None = None) -> str:
    """A lesson's set-up: the artifacts folder it uses, and outside a checkout the course data.

    ``artifacts`` (the parameters cell's ``artifacts_dir``) is kept when given; None or "" gives
    :func:`artifacts_dir`. When the data folder is not a checkout's ``data/`` and lacks a course file,
    the data are fetched into it (:func:`~tinybert_lib.data_setup.prepare_data`: ``$DATA_MIRROR`` or
    the hub), once.
    """
    from .data_setup import EXPECTED_SHA256, data_dir, prepare_data

    folder = str(artifacts) if artifacts else artifacts_dir(profile)
    data = data_dir()
    if not _is_checkout(data.parent) and not all((data / relpath).is_file() for relpath in EXPECTED_SHA256):
        mirror = os.environ.get("DATA_MIRROR")
        source = f"the mirror {mirror}" if mirror else "the Hugging Face hub"
        print(f"Fetching the course data from {source} into {data} (once) ...", flush=True)
        prepare_data(target=data)
    return folder


# ----------------------------------------------------------------------------------------------
# The repository in the lessons' install lines and the README's badges (maintainers)
# ----------------------------------------------------------------------------------------------


def _install_spec(extras: str = "") -> str:
    """What a lesson's first code cell installs outside a checkout: ``tinybert_lib @ git+https://...``."""
    return f"{DISTRIBUTION}{f'[{extras}]' if extras else ''} @ git+https://github.com/{REPOSITORY}"


def _colab_url(notebook: str) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>`` on the repository's main branch."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook}"


def _repositories_named(text: str) -> set[str]:
    """Every repository an install line or a Colab address in ``text`` names."""
    return {m.group(2) for m in _REPOSITORY_IN_URL.finditer(text)}


def _files_naming_the_repository(root: Path) -> list[Path]:
    return [*sorted((root / "notebooks").glob("*.ipynb")), *sorted((root / "solutions").glob("*.ipynb")),
            root / "README.md"]


def _sync(root: Path) -> list[Path]:
    """Make every install line and Colab address under ``root`` name :data:`REPOSITORY`; the files changed."""
    changed = []
    for path in _files_naming_the_repository(root):
        text = path.read_text(encoding="utf-8")
        new = _REPOSITORY_IN_URL.sub(lambda m: m.group(1) + REPOSITORY, text)
        if new != text:
            from .atomic import atomic_write_text

            atomic_write_text(path, new)
            changed.append(path)
    return changed


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinybert_lib.paths",
                                     description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sync", action="store_true",
                        help=f"rewrite the install lines and the README's badges to name {REPOSITORY}")
    args = parser.parse_args(argv)
    root = find_checkout()
    print(f"checkout: {root or 'none'}; artifacts: {artifacts_dir()}; repository: {REPOSITORY}")
    if args.sync:
        if root is None:
            parser.error("--sync rewrites files of a checkout: run it inside one")
        changed = _sync(root)
        print("rewrote: " + (", ".join(str(p.relative_to(root)) for p in changed) if changed else "nothing"))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
