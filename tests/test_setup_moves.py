"""A checkout moved (or copied) after `make setup`: the next `make setup` rebuilds its venv.

The venv names the folder it was made in (its scripts, the editable install, the course kernel's
spec), so it breaks when the folder moves. scripts/venv_home.py tells whether a venv was set up for
this checkout; the Makefile rebuilds one that was not. Fake venvs only: nothing is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import venv_home  # noqa: E402


def fake_venv(path: Path, built_as: Path | None = None) -> Path:
    """A folder shaped like a venv made at ``built_as`` (default: where it is), before `make setup`
    recorded anything: activate script, pyvenv.cfg and the course kernel's spec name that folder."""
    built_as = built_as or path
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "activate").write_text(f'deactivate () {{\n    :\n}}\nVIRTUAL_ENV="{built_as}"\nexport VIRTUAL_ENV\n')
    (path / "pyvenv.cfg").write_text(
        f"home = /usr/bin\nversion = 3.11.7\ncommand = /usr/bin/python3 -m venv {built_as}\n")
    kernel = path / "share" / "jupyter" / "kernels" / "tinybert"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({"argv": [f"{built_as}/bin/python", "-m", "ipykernel_launcher"]}))
    (path / ".installed").write_text("")  # as `make setup` left it before it recorded the path
    return path


def test_a_missing_venv_is_absent(tmp_path):
    assert venv_home.status(tmp_path / ".venv") == "absent"


def test_a_venv_recorded_for_this_checkout_is_kept(tmp_path, monkeypatch):
    venv = fake_venv(tmp_path / ".venv")
    assert venv_home.status(venv, checkout=tmp_path) == "ok"  # judged by its own records
    monkeypatch.chdir(tmp_path)
    venv_home.record(venv)
    assert (venv / ".installed").read_text() == f"venv={venv}\ncheckout={tmp_path}\n"
    assert venv_home.status(venv, checkout=tmp_path) == "ok"
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path)  # the same folder under another name
    try:
        assert venv_home.status(link / ".venv", checkout=link) == "ok"
    finally:
        link.unlink()


def test_a_moved_checkout_is_noticed(tmp_path, monkeypatch):
    old, new = tmp_path / "course", tmp_path / "moved"
    old.mkdir()
    fake_venv(old / ".venv")
    monkeypatch.chdir(old)
    venv_home.record(old / ".venv")
    old.rename(new)
    assert venv_home.status(new / ".venv", checkout=new) == f"moved {old / '.venv'}"


def test_a_copied_checkout_is_noticed(tmp_path, monkeypatch):
    (tmp_path / "course").mkdir()
    fake_venv(tmp_path / "course" / ".venv")
    monkeypatch.chdir(tmp_path / "course")
    venv_home.record(tmp_path / "course" / ".venv")
    shutil.copytree(tmp_path / "course", tmp_path / "copy", symlinks=True)
    # the original still exists, but it is another folder: the copy's venv runs the original's library
    assert venv_home.status(tmp_path / "copy" / ".venv", checkout=tmp_path / "copy") == f"moved {tmp_path / 'course' / '.venv'}"


def test_a_venv_outside_the_checkout_follows_the_checkout(tmp_path, monkeypatch):
    venv = fake_venv(tmp_path / "venvs" / "tinybert")
    (tmp_path / "course").mkdir()
    monkeypatch.chdir(tmp_path / "course")
    venv_home.record(venv)
    (tmp_path / "course").rename(tmp_path / "moved")
    assert venv_home.status(venv, checkout=tmp_path / "moved") == f"moved {tmp_path / 'course'}"


@pytest.mark.parametrize("record", ["bin/activate", "pyvenv.cfg", "share/jupyter/kernels/tinybert/kernel.json"])
def test_a_venv_set_up_before_the_record_is_judged_by_its_own_records(tmp_path, record):
    built = fake_venv(tmp_path / "old" / ".venv")
    venv = tmp_path / "new" / ".venv"
    fake_venv(venv)  # its records say where it is...
    (venv / record).write_text((built / record).read_text())  # ...but one names the old folder
    assert venv_home.status(venv, checkout=tmp_path / "new") == f"moved {built}"


def test_a_venv_without_records_is_never_removed_on_a_guess(tmp_path):
    (tmp_path / ".venv").mkdir()
    assert venv_home.status(tmp_path / ".venv", checkout=tmp_path) == "ok"


def make_plan(venv: Path) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    done = subprocess.run([make, "-n", "-C", str(ROOT), "setup", f"VENV={venv}", f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_setup_rebuilds_the_venv_of_a_moved_checkout(tmp_path):
    venv = fake_venv(tmp_path / ".venv")
    (venv / ".installed").write_text("venv=/somewhere/else/.venv\ncheckout=/somewhere/else\n")
    plan = make_plan(venv)
    assert f"was set up for /somewhere/else/.venv; rebuilding it for {ROOT}" in plan
    steps = plan.splitlines()
    first = steps.index(f"rm -rf {venv}")
    assert f"-m venv {venv}" in steps[first + 1]
    assert any("--require-hashes -r requirements.lock" in step for step in steps[first:])
    assert any(f"venv_home.py --record {venv}" in step for step in steps[first:])


def test_make_setup_keeps_the_venv_of_this_checkout(tmp_path):
    venv = fake_venv(tmp_path / ".venv")
    (venv / ".installed").write_text(f"venv={venv}\ncheckout={ROOT}\n")
    later = time.time() + 3600  # newer than requirements.lock and pyproject.toml
    os.utime(venv / ".installed", (later, later))
    plan = make_plan(venv)
    assert "rebuilding" not in plan and "rm -rf" not in plan and "-m venv" not in plan
    assert "--require-hashes" not in plan
