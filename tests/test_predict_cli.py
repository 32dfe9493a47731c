"""``python -m tinybert_lib predict``: one answer line per text; bad input gets one line, not a traceback."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch

from tinybert_lib import build_student, deploy, export_hf, set_seed
from tinybert_lib.predict_cli import main
from tinybert_lib.teachers import load_tokenizer, resolve_teacher_folder

# Far smaller than any preset: the command's behaviour, not the model's quality, is under test.
TINY = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 128}
LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_teacher_folder("minilm"))  # the packaged teacher's 30522 tokens (TINY's)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tokenizer) -> Path:
    """A tiny student with a named two-class head, exported as lesson 12 reads it."""
    set_seed(0)
    student = build_student(TINY, num_labels=2)
    student.add_classifier(2, label_names=LABELS)
    return export_hf(student.eval(), tokenizer, tmp_path_factory.mktemp("predict") / "classifier")


@pytest.fixture(scope="module")
def headless(tmp_path_factory, tokenizer) -> Path:
    """A general-distillation student: an encoder with no classification head (num_labels 0)."""
    set_seed(0)
    student = build_student(TINY)
    assert student.config.num_labels == 0
    return export_hf(student.eval(), tokenizer, tmp_path_factory.mktemp("predict") / "general")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one in-process call."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *words: str) -> str:
    """The single ``error: ...`` line on stderr, which must hold each of ``words``."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def check_plain(out: str, texts: list[str], header: str) -> None:
    """A header line, then ``label<TAB>prob<TAB>text`` for each text, in order."""
    lines = out.splitlines()
    assert lines[0] == header
    assert len(lines) == 1 + len(texts), out
    for line, text in zip(lines[1:], texts):
        label, prob, echoed = line.split("\t")
        assert label in LABELS and 0.5 <= float(prob) <= 1.0 and len(prob) == 5  # e.g. 0.512
        assert echoed == text


# --- answers ---------------------------------------------------------------------------------


def test_texts_as_arguments_one_line_each(classifier, capsys):
    code, out, err = run(capsys, str(classifier), "a gripping film", "bad .", "--threads", "1")
    assert (code, err) == (0, "")
    check_plain(out, ["a gripping film", "bad ."], f"# pytorch fp32, {classifier}")


def test_json_lines_without_header(classifier, capsys):
    texts = ["a gripping film", "bad .", 'tabs\tand "quotes" and é']
    code, out, err = run(capsys, str(classifier), "--json", *texts)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == len(texts), out  # no "# variant" header: every line is a JSON object
    records = [json.loads(line) for line in lines]
    assert [sorted(r) for r in records] == [["label", "probability", "text"]] * len(texts)
    assert [r["text"] for r in records] == texts
    assert all(r["label"] in LABELS and 0.5 <= r["probability"] <= 1.0 for r in records)
    # the same answers as the plain format
    code, out, _ = run(capsys, str(classifier), *texts[:2])
    assert [line.split("\t")[:2] for line in out.splitlines()[1:]] == [
        [r["label"], f"{r['probability']:.3f}"] for r in records[:2]]


@pytest.mark.parametrize("data", [b"a gripping film\nbad .\n", b"a gripping film\r\nbad .",
                                  b"\xef\xbb\xbfa gripping film\nbad .\n"],
                         ids=["lf", "crlf-no-final-newline", "bom"])
def test_stdin_one_text_per_line(classifier, capsys, monkeypatch, data):
    feed_stdin(monkeypatch, data)
    code, out, err = run(capsys, str(classifier), "-")
    assert (code, err) == (0, "")
    check_plain(out, ["a gripping film", "bad ."], f"# pytorch fp32, {classifier}")


def test_stdin_with_json(classifier, capsys, monkeypatch):
    feed_stdin(monkeypatch, "un film prenant, café\nbad .\n".encode())
    code, out, err = run(capsys, str(classifier), "-", "--json")
    assert (code, err) == (0, "")
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["un film prenant, café", "bad ."]


# --- refused inputs: one line on stderr, exit 2, nothing on stdout ----------------------------


def test_non_utf8_argument_is_refused_before_any_output(classifier, capsys):
    # Python turns the byte 0xe9 of a Latin-1 "café" in argv into the lone surrogate \udce9.
    code, out, err = run(capsys, str(classifier), "good film", "caf\udce9")
    assert (code, out) == (2, "")
    one_error_line(err, "text argument 2", "not valid UTF-8", r"b'caf\xe9'")


@pytest.mark.parametrize("empty", ["", "   ", "\t\n"])
def test_empty_argument_is_refused(classifier, capsys, empty):
    code, out, err = run(capsys, str(classifier), "a gripping film", empty)
    assert (code, out) == (2, "")
    one_error_line(err, "text argument 2", "empty")


@pytest.mark.parametrize("data, line", [(b"good\n\nbad\n", 2), (b"good\nbad\n \t\n", 3), (b"\n", 1)])
def test_blank_stdin_line_is_refused(classifier, capsys, monkeypatch, data, line):
    feed_stdin(monkeypatch, data)
    code, out, err = run(capsys, str(classifier), "-")
    assert (code, out) == (2, "")
    one_error_line(err, f"line {line} of standard input", "empty")


def test_non_utf8_stdin_line_is_refused(classifier, capsys, monkeypatch):
    feed_stdin(monkeypatch, b"good\ncaf\xe9 au lait\nbad\n")
    code, out, err = run(capsys, str(classifier), "-")
    assert (code, out) == (2, "")
    one_error_line(err, "line 2 of standard input", "not valid UTF-8", "0xe9")


@pytest.mark.parametrize("argv", [["-"], ["-", "also a text"]], ids=["empty-stdin", "stdin-and-arguments"])
def test_stdin_without_texts_or_mixed_is_refused(classifier, capsys, monkeypatch, argv):
    feed_stdin(monkeypatch, b"")
    code, out, err = run(capsys, str(classifier), *argv)
    assert (code, out) == (2, "")
    one_error_line(err, "standard input")


@pytest.mark.parametrize("threads", ["-3", "0", "two"])
def test_threads_below_one_is_a_usage_error(classifier, capsys, threads):
    with pytest.raises(SystemExit) as exit_:
        main([str(classifier), "a gripping film", "--threads", threads])
    out, err = capsys.readouterr()
    assert (exit_.value.code, out) == (2, "")
    assert "Traceback" not in err
    # argparse's usual refusal: its usage lines, then one error line naming the option
    assert err.startswith("usage: ") and "argument --threads: must be" in err.strip().splitlines()[-1]


# --- models that cannot classify: one line, exit 1 ---------------------------------------------


def test_model_without_head_says_which_model_to_give(headless, capsys):
    code, out, err = run(capsys, str(headless), "a gripping film")
    assert (code, out) == (1, "")
    one_error_line(err, "no classification head", "task-distilled student", "task_step2/model")
    for onnx in (False, True):  # lesson code gets the same answer from the library, for any variant
        with pytest.raises(deploy.DeploymentError, match="no classification head"):
            deploy.load_classifier(headless, onnx=onnx)


def test_head_claimed_by_config_but_absent_from_weights(headless, tmp_path):
    """The weights, not config.json, decide: a config edited to name a classifier is not believed."""
    folder = tmp_path / "claims-a-head"
    folder.mkdir()
    for file in headless.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(deploy.DeploymentError, match="no classification head"):
        deploy.load_classifier(folder)


def test_unusable_models_are_one_line_exit_1(classifier, tmp_path, capsys):
    code, out, err = run(capsys, str(tmp_path / "absent"), "a gripping film")
    assert (code, out) == (1, "")
    one_error_line(err, "not a folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"architectures": ["BertForSeq')  # a truncated config
    code, out, err = run(capsys, str(broken), "a gripping film")
    assert (code, out) == (1, "")
    one_error_line(err, "cannot read", "config.json")


def test_classifier_weights_stay_usable(classifier):
    """The fixture's model is a real classifier for the library too (guards the tests above)."""
    loaded = deploy.load_classifier(classifier)
    assert loaded.labels == LABELS
    batch = dict(loaded.tokenizer(["a gripping film"], return_tensors="pt"))
    assert loaded.run(batch).shape == torch.Size([1, 2])
