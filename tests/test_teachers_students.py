"""Loading teachers, building students, and the errors a learner meets on bad input."""

from __future__ import annotations

import pytest

from tinybert_lib import BertConfig, STUDENT_PRESETS, TeacherNotFoundError, build_student, load_teacher


def test_packaged_teacher(teacher):
    cfg = teacher.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.vocab_size) == (6, 384, 12, 30522)
    assert teacher.tokenizer.is_fast
    assert not teacher.training


def test_local_folder_teacher(tmp_path, teacher):
    from tinybert_lib import export_hf

    folder = export_hf(teacher, teacher.tokenizer, tmp_path / "copy")
    again = load_teacher(str(folder))
    for (k, a), (_, b) in zip(teacher.state_dict().items(), again.state_dict().items()):
        assert (a == b).all(), k


def test_wrong_teacher_name_gives_one_clear_error():
    with pytest.raises(TeacherNotFoundError, match="neither a local folder nor available") as info:
        load_teacher("no-such-org/no-such-bert")
    assert "minilm" in str(info.value)


def test_missing_teacher_folder_gives_clear_error(tmp_path):
    with pytest.raises(TeacherNotFoundError, match="no such folder"):
        load_teacher(str(tmp_path / "missing"))


def test_student_takes_vocab_from_teacher(teacher):
    student = build_student("minilm-3l-192d", teacher=teacher)
    assert student.config.vocab_size == teacher.config.vocab_size
    assert student.config.num_attention_heads == 12
    assert student.tokenizer is teacher.tokenizer
    assert student.training  # a fresh student is ready to train


def test_student_with_wrong_head_count_refused(teacher):
    cfg = BertConfig(hidden_size=192, num_hidden_layers=3, num_attention_heads=4, intermediate_size=768)
    with pytest.raises(ValueError, match="12 attention heads.*has 4"):
        build_student(cfg, teacher=teacher)


def test_student_with_wrong_vocab_refused(teacher):
    cfg = BertConfig(vocab_size=1000, hidden_size=192, num_hidden_layers=3, intermediate_size=768)
    with pytest.raises(ValueError, match="vocabulary has 1000 entries"):
        build_student(cfg, teacher=teacher)


def test_student_deeper_than_teacher_refused(teacher):
    with pytest.raises(ValueError, match="only 6"):
        build_student(BertConfig(hidden_size=192, num_hidden_layers=8, intermediate_size=768), teacher=teacher)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="minilm-3l-192d"):
        build_student("tiny-bogus")


def test_paper_preset_size():
    student = build_student("tinybert-4l-312d")
    assert set(STUDENT_PRESETS) >= {"minilm-3l-192d", "tinybert-4l-312d"}
    # TinyBERT4 has ~14.5M parameters (paper, Table 1).
    assert 14.0e6 < student.num_parameters() < 15.0e6
