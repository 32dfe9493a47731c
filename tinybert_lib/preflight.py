"""Before a long run: check that everything a profile needs is here, and say all that is missing at once.

Tooling: not taught (every lesson's parameters cell calls ``check_lesson_parameters``; lesson 00
prints ``missing_for``). Setup and command line sit together: ``data_setup``, ``preflight``, ``cli``,
``predict_cli`` and ``__main__``.

A run of the ``gpu`` profile needs a CUDA GPU, the ``bert-base-uncased`` teacher (from the hub
or a local copy) and the course data. Finding out about the second after an hour spent on the
first is what this check prevents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from .data_setup import CORPUS_FILES, DataIntegrityError, DataNotFoundError, _require
from .profiles import OFFLINE_ALTERNATIVE, PROFILES, Profile, get_profile
from .runtime import pick_device
from .tasks import get_task
from .errors import CourseError
from .teachers import TeacherNotFoundError, load_tokenizer, resolve_teacher_folder


class ProfileNotReadyError(CourseError, RuntimeError):
    """Something a run profile needs (device, teacher, data) is not available."""


class LessonParameterError(CourseError, ValueError):
    """A lesson's parameters (profile, device, artifacts folder) cannot work on this machine."""


def _writable_folder_problem(folder: str | Path) -> Optional[str]:
    """Why results cannot be written into ``folder`` (None: they can). Creates the folder."""
    folder = Path(folder).expanduser()
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        return (f"cannot write to the artifacts folder {folder} ({reason}); "
                "give a folder you can write to (--artifacts PATH, or artifacts_dir in a lesson)")
    return None


def missing_for(profile: Profile | str, device: Optional[str] = None,
                artifacts_dir: Optional[str | Path] = None) -> list[str]:
    """What ``profile`` needs and does not have here, one line each (empty: ready to run).

    ``artifacts_dir``: also create that folder and check that a file can be written there,
    before any training whose results would be lost at the first save.
    """
    profile = get_profile(profile)
    problems: list[str] = []
    try:
        pick_device(device or profile.device)
    except (RuntimeError, ValueError) as err:  # no such accelerator here / no such device name
        problems.append(f"device: {err}")
    try:
        load_tokenizer(resolve_teacher_folder(profile.teacher))  # a folder without its tokenizer is refused here
    except (TeacherNotFoundError, CourseError) as err:
        problems.append(f"teacher: {err}")
    for relpath in [*get_task(profile.task).files.values(), *CORPUS_FILES.values()]:
        try:
            _require(relpath, strict=True)  # a file that is not the course's stops the run here
        except (DataNotFoundError, DataIntegrityError) as err:
            problems.append(f"data: {err}")
    if artifacts_dir is not None:
        problem = _writable_folder_problem(artifacts_dir)
        if problem:
            problems.append(f"artifacts: {problem}")
    return problems


def check_ready(profile: Profile | str, device: Optional[str] = None, artifacts_dir: Optional[str | Path] = None) -> None:
    """Raise :class:`ProfileNotReadyError` listing every missing input of ``profile``.

    One problem gives a one-line message; several, one line each.
    """
    profile = get_profile(profile)
    problems = missing_for(profile, device, artifacts_dir)
    alternative = OFFLINE_ALTERNATIVE.get(profile.name)
    offline = any(p.startswith(("teacher:", "data:")) for p in problems)
    hint = (f" Without the hub, --profile {alternative} runs on one GPU from the packaged teacher and the local data."
            if alternative and offline else "")
    if len(problems) == 1:
        raise ProfileNotReadyError(f"profile {profile.name!r} cannot run here: {problems[0]}{hint}")
    if problems:
        raise ProfileNotReadyError(
            f"profile {profile.name!r} cannot run here; missing:\n" + "\n".join(f"  - {p}" for p in problems)
            + "\n(the 'cpu' and 'smoke' profiles run offline on any machine with the packaged teacher" +
            (f"; on a GPU, '{alternative}'" if alternative else "") + ".)"
        )


def check_lesson_parameters(profile: Profile | str, device: str | torch.device = "auto",
                            artifacts_dir: Optional[str | Path] = None) -> tuple[Profile, torch.device]:
    """Check a lesson's parameters cell at once: ``(profile, device)`` to use, or one clear error.

    Raises :class:`LessonParameterError` for an unknown profile name, a device this machine
    does not have (e.g. ``"cuda"`` without a GPU) or an artifacts folder that cannot be
    created or written. Call it in a lesson's first code cell, before any slow work.
    """
    try:
        resolved = get_profile(profile)
    except ValueError as err:
        raise LessonParameterError(f"profile: {err} Set profile = one of {', '.join(PROFILES)} in the parameters cell.") from None
    try:
        dev = pick_device(device)
    except (RuntimeError, ValueError) as err:
        raise LessonParameterError(f"device: {err}") from None
    if artifacts_dir is not None:
        problem = _writable_folder_problem(artifacts_dir)
        if problem:
            raise LessonParameterError(f"artifacts_dir: {problem}")
    return resolved, dev
