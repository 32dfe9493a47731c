"""Mistakes a person makes get one clear line, before any training: no tracebacks, no lost work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tinybert_lib as tl
from tinybert_lib import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started although the run could not succeed")

    monkeypatch.setattr(cli.PipelineRun, "get", refuse)  # every stage the command line runs goes through it


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_unwritable_artifacts_folder_is_refused_before_training(tmp_path, capsys, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for artifacts in (blocker, blocker / "artifacts"):
        assert cli.main(["general", "--profile", "smoke", "--device", "cpu", "--artifacts", str(artifacts)]) == 1
        err = _one_line_error(capsys)
        assert "cannot write to the artifacts folder" in err and str(artifacts) in err


def test_unknown_profile_and_device_are_one_line(capsys, no_training):
    assert cli.main(["general", "--profile", "laptop"]) != 0
    assert "unknown profile 'laptop'; valid profiles: smoke, cpu, gpu" in _one_line_error(capsys)
    assert cli.main(["general", "--profile", "smoke", "--device", "tpu"]) != 0
    assert "unknown device 'tpu'" in _one_line_error(capsys)


def test_data_prepare_into_an_unwritable_target_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "DATA_MIRROR": os.environ.get("DATA_MIRROR") or str(tl.data.data_dir())}
    done = subprocess.run([sys.executable, "-m", "tinybert_lib", "data", "prepare", "--target", str(blocker / "data")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    err = done.stderr.strip()
    assert done.returncode != 0
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert str(blocker / "data") in err


def test_build_student_names_the_default_vocab_it_was_given():
    teacher = tl.Bert(tl.BertConfig(vocab_size=1000, hidden_size=48, num_hidden_layers=2, num_attention_heads=12,
                                    intermediate_size=96))
    config = tl.BertConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=12, intermediate_size=48)
    with pytest.raises(ValueError, match=r"vocab_size=30522, BertConfig's default.*vocab_size=1000"):
        tl.build_student(config, teacher=teacher)
    as_dict = {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 12, "intermediate_size": 48}
    assert tl.build_student(as_dict, teacher=teacher).config.vocab_size == 1000  # the fix the message suggests


def test_check_lesson_parameters(tmp_path):
    profile, device = tl.check_lesson_parameters("smoke", "cpu", tmp_path / "new" / "artifacts")
    assert profile.name == "smoke" and device == torch.device("cpu") and (tmp_path / "new" / "artifacts").is_dir()
    assert not list((tmp_path / "new" / "artifacts").iterdir()), "the write test left a file behind"
    with pytest.raises(tl.LessonParameterError, match="profile: unknown profile 'laptop'"):
        tl.check_lesson_parameters("laptop", "cpu")
    with pytest.raises(tl.LessonParameterError, match="device: unknown device 'tpu'"):
        tl.check_lesson_parameters("smoke", "tpu")
    if not torch.cuda.is_available():
        with pytest.raises(tl.LessonParameterError, match="device: .*no CUDA GPU"):
            tl.check_lesson_parameters("smoke", "cuda")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(tl.LessonParameterError, match="artifacts_dir: cannot write"):
        tl.check_lesson_parameters("smoke", "cpu", blocker / "artifacts")
