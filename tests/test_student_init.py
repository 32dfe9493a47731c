"""``Profile.student_init``: where the student starts (random, the teacher's layers, or a saved general
student), what each start records, and the saved student used as it is, without training."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tinybert_lib as tl
from tinybert_lib import cli, pipeline
from tinybert_lib.bert import Bert, BertConfig
from tinybert_lib.distill import StageResult
from tinybert_lib.losses import make_projections
from tinybert_lib.profiles import ProfileFieldError, parse_override
from tinybert_lib.records import StaleArtifactError, fingerprint_tensors
from tinybert_lib.students import StudentInitError, load_general_student, student_from_teacher_layers
from tinybert_lib.training import TrainResult

TINY = dict(general_batch_size=4, general_epochs=1, log_every=1, max_seq_len_general=32, seed=3, device="cpu")
#: Every key of a random start's general-distillation record, as written before student_init existed.
RANDOM_RECORD = {"stage", "profile", "teacher", "student", "projections", "mapping", "weights",
                 "attention_kind", "corpus", "valid"}


def _same(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> bool:
    a, b = (m.state_dict() if isinstance(m, torch.nn.Module) else m for m in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def corpus(teacher):
    return tl.data.corpus_blocks(teacher.tokenizer, 32, max_blocks=8)


# --- "teacher": DistilBERT's start ------------------------------------------------------------


def test_teacher_start_copies_the_embeddings_and_exactly_the_mapped_layers(teacher):
    student = student_from_teacher_layers(teacher, "minilm-3l-384d")
    assert student.tokenizer is teacher.tokenizer and student.config.vocab_size == teacher.config.vocab_size
    assert _same(student.bert.embeddings, teacher.bert.embeddings)
    layers = teacher.bert.encoder.layer
    for m, g in enumerate([2, 4, 6]):  # layer_map(3, 6): every other teacher layer
        assert _same(student.bert.encoder.layer[m], layers[g - 1])
        assert not _same(student.bert.encoder.layer[m], layers[g - 2])
    # copies, not shared tensors: training the student leaves the teacher as it was
    copied, original = student.bert.encoder.layer[0].output.dense.weight, layers[1].output.dense.weight
    assert copied.data_ptr() != original.data_ptr()


def test_teacher_start_on_a_tiny_teacher_maps_layers_and_cuts_the_position_table():
    torch.manual_seed(0)
    teacher = Bert(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=64, layer_norm_eps=1e-5))
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=16)
    student = student_from_teacher_layers(teacher, shape)
    for m, g in enumerate([2, 4]):
        assert _same(student.bert.encoder.layer[m], teacher.bert.encoder.layer[g - 1])
    positions = teacher.bert.embeddings.position_embeddings.weight[:16]
    assert torch.equal(student.bert.embeddings.position_embeddings.weight, positions)
    assert student.bert.encoder.layer[0].output.LayerNorm.eps == 1e-5 == student.config.layer_norm_eps


def test_teacher_start_refuses_another_width_and_names_what_differs(teacher):
    named = (r"(?s)hidden_size 192 \(the teacher's: 384\).*intermediate_size 768 \(the teacher's: 1536\)"
             r".*hidden_size=384, num_attention_heads=12, intermediate_size=1536.*'minilm-3l-384d'")
    with pytest.raises(StudentInitError, match=named):
        student_from_teacher_layers(teacher, "minilm-3l-192d")


# --- the profile field and the command line ---------------------------------------------------


def test_student_init_is_a_profile_field_set_from_the_command_line(tmp_path, monkeypatch, capsys):
    assert tl.get_profile("smoke").student_init == "random"
    assert parse_override("student_init=teacher") == ("student_init", "teacher")
    assert parse_override(f"student_init={tmp_path}") == ("student_init", str(tmp_path))
    assert tl.get_profile("smoke", student_init=tmp_path).student_init == str(tmp_path)  # a Path: as text
    with pytest.raises(ProfileFieldError, match=r"student_init 'teachr': use 'random', 'teacher' or the"):
        tl.get_profile("smoke", student_init="teachr")

    seen = []
    monkeypatch.setattr(cli, "PipelineRun", lambda profile, *_: seen.append(profile) or SimpleNamespace(
        get=lambda stage, rebuild=False: SimpleNamespace(metrics={})))
    args = ["general", "--profile", "smoke", "--device", "cpu", "--artifacts", str(tmp_path / "a")]
    assert cli.main([*args, "--set", "student_init=teacher", "--set", "student=minilm-3l-384d"]) == 0
    assert (seen[-1].student_init, seen[-1].student) == ("teacher", "minilm-3l-384d")
    assert cli.main([*args, "--set", "student_init=teachr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "student_init 'teachr'" in err and "\n" not in err


# --- what the general stage records ------------------------------------------------------------


def _general_without_training(monkeypatch, teacher, corpus, out: Path, **overrides):
    """The general stage with ``general_distill`` replaced by one that keeps the student it was given."""
    given = []

    def no_training(teacher, student, corpus, config, **_):
        given.append({k: v.clone() for k, v in student.state_dict().items()})
        projections = make_projections(student.config.hidden_size, teacher.config.hidden_size,
                                       student.config.num_hidden_layers)
        return StageResult(student, TrainResult(steps=1), projections)

    monkeypatch.setattr(pipeline, "general_distill", no_training)
    profile = tl.get_profile("smoke", **TINY, **overrides)
    pipeline.PipelineRun(profile, out, "cpu").general(teacher=teacher, corpus=corpus, valid=corpus)
    return given[0], pipeline.summary(out, "general")["settings"]


def test_a_random_start_records_what_it_always_did(monkeypatch, teacher, corpus, tmp_path):
    _, settings = _general_without_training(monkeypatch, teacher, corpus, tmp_path)
    assert set(settings) == RANDOM_RECORD
    assert "student_init" not in json.dumps(settings)


def test_a_teacher_start_is_recorded_and_starts_from_the_teachers_layers(monkeypatch, teacher, corpus,
                                                                         tmp_path):
    start, settings = _general_without_training(monkeypatch, teacher, corpus, tmp_path,
                                                student="minilm-3l-384d", student_init="teacher")
    assert set(settings) == RANDOM_RECORD | {"student_init"} and settings["student_init"] == "teacher"
    tl.set_seed(TINY["seed"])  # as the stage does, for the one part not copied (the pooler)
    assert _same(start, student_from_teacher_layers(teacher, "minilm-3l-384d").state_dict())


def test_a_teacher_start_really_trains(teacher, corpus, tmp_path):
    profile = tl.get_profile("smoke", **TINY, student="minilm-3l-384d", student_init="teacher")
    data = dict(teacher=teacher, corpus=corpus, valid=corpus)
    result = pipeline.run_general_distillation(profile, tmp_path, **data)
    assert result.train.steps > 0 and result.train.resumed_from == 0
    assert pipeline.summary(tmp_path, "general")["settings"]["student_init"] == "teacher"
    again = pipeline.run_general_distillation(profile, tmp_path, **data)
    assert again.train.resumed_from == again.train.steps  # reused, as any finished stage


def test_a_start_from_the_profile_and_a_student_passed_in_are_refused_together(teacher, tmp_path):
    profile = tl.get_profile("smoke", student="minilm-3l-384d", student_init="teacher")
    with pytest.raises(ValueError, match="give one or the other"):
        pipeline.PipelineRun(profile, tmp_path, "cpu").general(teacher=teacher, student=tl.build_student(
            "minilm-3l-384d", teacher=teacher))


# --- a saved general student ------------------------------------------------------------------


def _saved_general_student(teacher, folder: Path, seed: int, with_projections: bool = True) -> Bert:
    """A general student as stage 1 leaves it: ``folder/model`` and ``folder/projections.safetensors``."""
    tl.set_seed(seed)
    student = tl.build_student("minilm-3l-192d", teacher=teacher)
    tl.export_hf(student, teacher.tokenizer, folder / "model")
    if with_projections:
        pipeline._save_projections(make_projections(192, 384, 3), folder / "projections.safetensors")
    else:
        (folder / "projections.safetensors").unlink(missing_ok=True)
    return student


def test_a_saved_general_student_is_used_without_training(monkeypatch, teacher, tmp_path, caplog):
    from safetensors.torch import load_file

    source = tmp_path / "released" / "general_student"
    saved = _saved_general_student(teacher, source, seed=1)

    def refuse(*_, **__):
        raise AssertionError("a saved general student must not be trained")

    monkeypatch.setattr(pipeline, "general_distill", refuse)
    monkeypatch.setattr(pipeline, "corpus_blocks", refuse)  # nor its corpus read
    profile = tl.get_profile("smoke", **TINY, student_init=str(source / "model"))
    artifacts = tmp_path / "artifacts"
    with caplog.at_level(logging.INFO, logger="tinybert_lib.pipeline"):
        result = pipeline.PipelineRun(profile, artifacts, "cpu").general(teacher=teacher)
    assert "with the projections in" in caplog.text
    assert _same(result.model, saved) and result.model.tokenizer is teacher.tokenizer
    assert _same(result.projections, load_file(str(source / "projections.safetensors")))
    done = pipeline.summary(artifacts, "general")
    assert done["steps"] == 0
    assert done["settings"]["student_init"] == {"folder": str((source / "model").resolve()),
                                                "sha256": fingerprint_tensors(saved)}
    # the copy in general_student/ is what the next stages read (their records fingerprint it)
    copy = tl.teachers.read_bert_folder(pipeline.stage_dir(artifacts, "general") / "model", "")
    assert _same(copy, saved)
    again = pipeline.PipelineRun(profile, artifacts, "cpu").general(teacher=teacher)  # reused
    assert _same(again.model, saved)

    # another student in the same folder: the recorded source no longer matches
    _saved_general_student(teacher, source, seed=2, with_projections=False)
    with pytest.raises(StaleArtifactError, match=r"student_init\.sha256: \w{12} -> \w{12}"):
        pipeline.PipelineRun(profile, artifacts, "cpu").general(teacher=teacher)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tinybert_lib.pipeline"):
        rebuilt = pipeline.PipelineRun(profile, artifacts, "cpu").general(teacher=teacher, rebuild=True)
    assert "fresh projections" in caplog.text
    tl.set_seed(profile.seed)
    assert _same(rebuilt.projections, make_projections(192, 384, 3))  # seeded with the profile's seed


def test_a_saved_student_that_cannot_match_the_teacher_is_refused(teacher, tmp_path):
    other = Bert(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64))
    tl.export_hf(other, None, tmp_path / "model")
    named = r"vocab_size 100 \(the teacher's: 30522\), num_attention_heads 4 \(the teacher's: 12\)"
    with pytest.raises(StudentInitError, match=named):
        load_general_student(tmp_path / "model", teacher)
    deep = Bert(BertConfig(num_hidden_layers=4))  # 4 layers cannot map onto the teacher's 6
    tl.export_hf(deep, None, tmp_path / "deep")
    with pytest.raises(StudentInitError, match="divisible"):
        load_general_student(tmp_path / "deep", teacher)
