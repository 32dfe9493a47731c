"""Profiles, seeds, devices, and the pinned environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tinybert_lib import PROFILES, get_profile, pick_device, set_seed

ROOT = Path(__file__).resolve().parents[1]


def test_profiles_exist_and_smoke_is_small():
    assert set(PROFILES) == {"smoke", "cpu", "gpu", "gpu-local"}
    smoke, cpu = get_profile("smoke"), get_profile("cpu")
    assert smoke.train_limit is not None and cpu.train_limit is None  # cpu uses all of SST-2
    assert get_profile("gpu").student == "tinybert-4l-312d"


def test_unknown_profile_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown profile 'laptop'; valid profiles: smoke, cpu, gpu"):
        get_profile("laptop")


def test_profile_overrides():
    assert get_profile("smoke", device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("smoke", epochs=3)


def test_set_seed_repeats():
    set_seed(7)
    a = torch.randn(3)
    set_seed(7)
    assert torch.equal(a, torch.randn(3))


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")


def _pins(lines):
    return dict(re.match(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==(\S+)", ln).groups() for ln in lines if re.match(r"^\s*-?\s*[A-Za-z0-9_.\-]+==", ln))


def test_environment_yml_matches_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    lab = _pins((ROOT / "requirements-lab.txt").read_text().splitlines())  # conda users get the lab too
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert req, "requirements.txt pins nothing"
    assert {**req, **lab} == env
    assert req["torch"] == "2.13.0"


def test_preflight_names_everything_the_gpu_profile_lacks_offline(monkeypatch):
    import torch

    from tinybert_lib.preflight import ProfileNotReadyError, check_ready, missing_for

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problems = missing_for("gpu")
    assert [p.split(":")[0] for p in problems] == ["device", "teacher"]
    assert "bert-base-uncased" in problems[1]
    with pytest.raises(ProfileNotReadyError, match="(?s)profile 'gpu' cannot run here.*device.*teacher"):
        check_ready("gpu")
    assert missing_for("smoke") == [] and missing_for("cpu") == []


def test_cli_stops_before_training_when_the_profile_cannot_run(monkeypatch, capsys):
    import torch

    from tinybert_lib.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["general", "--profile", "gpu"]) == 1
    assert "cannot run here" in capsys.readouterr().err


def test_the_training_loop_and_the_library_agree_on_the_main_process(monkeypatch):
    """fit asks runtime.is_main_process; a launcher that leaves RANK wrong is stopped, not trusted."""
    from tinybert_lib.runtime import is_main_process
    from tinybert_lib.training import make_accelerator

    assert is_main_process() and make_accelerator(torch.device("cpu")).process_index == 0
    monkeypatch.setenv("RANK", "1")  # the variables say "not the main process", Accelerate says process 0 of 1
    assert not is_main_process()
    with pytest.raises(RuntimeError, match="accelerate launch"):
        make_accelerator(torch.device("cpu"))
