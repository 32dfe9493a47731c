"""Before a long run: check that everything a profile needs is here, and say all that is missing at once.

A run of the ``gpu`` profile needs a CUDA GPU, the ``bert-base-uncased`` teacher (from the hub
or a local copy) and the course data. Finding out about the second after an hour spent on the
first is what this check prevents.
"""

from __future__ import annotations

from typing import Optional

from .data import CORPUS_FILES, SST2_FILES, DataNotFoundError, _require
from .profiles import Profile, get_profile
from .runtime import pick_device
from .teachers import TeacherNotFoundError, resolve_teacher_folder


class ProfileNotReadyError(RuntimeError):
    """Something a run profile needs (device, teacher, data) is not available."""


def missing_for(profile: Profile | str, device: Optional[str] = None) -> list[str]:
    """What ``profile`` needs and does not have here, one line each (empty: ready to run)."""
    profile = get_profile(profile)
    problems: list[str] = []
    try:
        pick_device(device or profile.device)
    except RuntimeError as err:
        problems.append(f"device: {err}")
    try:
        resolve_teacher_folder(profile.teacher)
    except TeacherNotFoundError as err:
        problems.append(f"teacher: {err}")
    for relpath in [*SST2_FILES.values(), *CORPUS_FILES.values()]:
        try:
            _require(relpath)
        except DataNotFoundError as err:
            problems.append(f"data: {err}")
    return problems


def check_ready(profile: Profile | str, device: Optional[str] = None) -> None:
    """Raise :class:`ProfileNotReadyError` listing every missing input of ``profile``."""
    profile = get_profile(profile)
    problems = missing_for(profile, device)
    if problems:
        raise ProfileNotReadyError(
            f"profile {profile.name!r} cannot run here; missing:\n" + "\n".join(f"  - {p}" for p in problems)
            + "\n(the 'cpu' and 'smoke' profiles run offline on any machine with the packaged teacher.)"
        )
