"""``run STAGE --set FIELD=VALUE`` and ``run general --corpus FILE``: any profile field from the command line,
general distillation on a text file of one's own, and one clear line for each mistake."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinybert_lib import cli, data, estimate, get_profile, pipeline
from tinybert_lib.data_setup import CorpusFileError, DataIntegrityError, check_corpus_file
from tinybert_lib.profiles import ProfileFieldError, parse_override

ROOT = Path(__file__).resolve().parents[1]

PARAGRAPHS = "First document, line one.\nFirst document, line two.\n\nSecond document.\n\n\n  \nThird\r\ndocument.\n\n"
ONE_PER_LINE = "\ufeffOne.\nTwo, a longer line.\nThree.\n\n"  # a byte-order mark and a trailing blank line


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@pytest.fixture
def seen_profiles(monkeypatch) -> list:
    """The command line's PipelineRun replaced by one that records its profile and trains nothing."""
    seen: list = []

    class NoTraining:
        def __init__(self, profile, artifacts, device=None):
            seen.append(profile)

        def get(self, stage, rebuild=False):
            return SimpleNamespace(metrics={})

    monkeypatch.setattr(cli, "PipelineRun", NoTraining)
    return seen


@pytest.fixture(scope="module")
def tok():
    from tinybert_lib.teachers import load_tokenizer, resolve_teacher_folder

    return load_tokenizer(resolve_teacher_folder("minilm"))


# --- --set: parsing -----------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("general_epochs=2", ("general_epochs", 2)),  # int
    ("seed=-1", ("seed", -1)),
    ("general_lr=1e-3", ("general_lr", 0.001)),  # float, written as a learning rate is
    ("finetune_lr=5e-5", ("finetune_lr", 5e-5)),
    ("temperature=2", ("temperature", 2.0)),
    ("cpu_bf16=true", ("cpu_bf16", True)),  # bool
    ("cpu_bf16=False", ("cpu_bf16", False)),
    ("cpu_bf16=1", ("cpu_bf16", True)),
    ("cpu_bf16=0", ("cpu_bf16", False)),
    ("cpu_bf16=yes", ("cpu_bf16", True)),
    ("cpu_bf16=no", ("cpu_bf16", False)),
    ("classifier_pooling=mean", ("classifier_pooling", "mean")),  # str
    ("teacher=/models/a=b", ("teacher", "/models/a=b")),  # only the first '=' splits
    ("train_limit=100", ("train_limit", 100)),  # Optional[int]
    ("train_limit=none", ("train_limit", None)),
    ("corpus_max_blocks=NULL", ("corpus_max_blocks", None)),
    ("ablation_finetune_lr=3e-4", ("ablation_finetune_lr", 3e-4)),  # Optional[float]
    ("ablation_finetune_lr=null", ("ablation_finetune_lr", None)),
])
def test_each_type_is_parsed(text, expected):
    name, value = parse_override(text)
    assert (name, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize("text, words", [
    ("general_epochs=1.5", ["general_epochs", "an integer", "'1.5'"]),
    ("general_lr=fast", ["general_lr", "a number", "'fast'"]),
    ("general_lr=nan", ["general_lr", "a number", "'nan'"]),
    ("cpu_bf16=maybe", ["cpu_bf16", "true or false", "'maybe'"]),
    ("train_limit=all", ["train_limit", "an integer or none", "'all'"]),
    ("seed=", ["seed", "an integer", "''"]),
])
def test_a_bad_value_names_field_value_and_type(text, words):
    with pytest.raises(ProfileFieldError) as caught:
        parse_override(text)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_an_unknown_field_names_the_close_ones_and_where_all_are_listed():
    with pytest.raises(ProfileFieldError, match=r"unknown profile field 'general_l' \(did you mean general_lr") as caught:
        parse_override("general_l=1e-3")
    assert "tinybert_lib/profiles.py" in str(caught.value)
    with pytest.raises(ProfileFieldError, match=r"did you mean general_epochs\?"):
        get_profile("smoke", epochs=3)  # Python's overrides say the same
    with pytest.raises(ProfileFieldError, match="expected FIELD=VALUE"):
        parse_override("general_lr")


# --- --set and --corpus on the command line (no training) ---------------------------------


def test_set_applies_after_profile_and_task(tmp_path, seen_profiles):
    args = ["general", "--profile", "smoke", "--device", "cpu", "--artifacts", str(tmp_path)]
    assert cli.main([*args, "--task", "mrpc"]) == 0
    assert seen_profiles[-1].train_limit == 48  # the smoke profile's setting for MRPC
    assert cli.main([*args, "--task", "mrpc", "--set", "train_limit=10", "--set", "finetune_lr=5e-5",
                     "--set", "general_lr=1e-3", "--set", "dev_limit=none", "--set", "general_lr=2e-3"]) == 0
    p = seen_profiles[-1]
    assert (p.task, p.train_limit, p.finetune_lr, p.dev_limit, p.general_lr) == ("mrpc", 10, 5e-5, None, 2e-3)
    assert p.augment_limit == 16  # the task's other settings stay


def test_corpus_is_a_profile_value_with_an_absolute_path(tmp_path, seen_profiles, monkeypatch):
    _write(tmp_path / "mine.txt", ONE_PER_LINE)
    monkeypatch.chdir(tmp_path)
    args = ["general", "--device", "cpu", "--artifacts", str(tmp_path / "artifacts")]
    assert cli.main([*args, "--corpus", "mine.txt"]) == 0
    assert seen_profiles[-1].general_corpus == str(tmp_path / "mine.txt")
    assert cli.main([*args, "--set", "general_corpus=mine.txt"]) == 0  # the same, written as --set
    assert seen_profiles[-1].general_corpus == str(tmp_path / "mine.txt")
    assert cli.main([*args, "--corpus", "wikitext-103"]) == 0  # a corpus name stays a name
    assert seen_profiles[-1].general_corpus == "wikitext-103"


def test_command_line_mistakes_are_one_line_with_exit_code_2(tmp_path, capsys, seen_profiles):
    args = ["general", "--device", "cpu", "--artifacts", str(tmp_path / "artifacts")]
    not_utf8 = _write(tmp_path / "latin1.txt", "caf\u00e9 ok\n".encode("utf-8") + "na\u00efve\n".encode("latin-1"))
    cases = {
        ("--set", "general_l=1e-3"): ["unknown profile field 'general_l'", "did you mean general_lr",
                                      "tinybert_lib/profiles.py"],
        ("--set", "general_lr=fast"): ["general_lr", "a number", "'fast'"],
        ("--set", "general_lr"): ["expected FIELD=VALUE"],
        ("--set", "general_corpus=wikitext-3"): ["unknown general-distillation corpus 'wikitext-3'", "wikitext-103"],
        ("--corpus", str(tmp_path / "missing.txt")): [f"corpus file {tmp_path / 'missing.txt'} not found"],
        ("--corpus", str(tmp_path)): [f"{tmp_path} is not a file"],
        ("--corpus", str(not_utf8)): [f"{not_utf8}, line 2: not valid UTF-8", "save the file as UTF-8"],
        ("--corpus", str(_write(tmp_path / "empty.txt", ""))): ["empty.txt holds no text"],
        ("--corpus", str(_write(tmp_path / "blank.txt", "\n  \n\t\n"))): ["blank.txt holds no text"],
        ("--corpus", str(_write(tmp_path / "a.txt", "x\n")), "--set", "general_corpus=wikitext-2"): ["give the corpus once"],
    }
    for extra, words in cases.items():
        assert cli.main([*args, *extra]) == 2, extra
        err = _one_line_error(capsys)
        assert all(word in err for word in words), (extra, err)
    assert not seen_profiles, "a run started although its command line was wrong"


def test_an_unreadable_corpus_file_is_one_line(tmp_path, capsys, seen_profiles, monkeypatch):
    locked = _write(tmp_path / "locked.txt", "text\n")
    real_open = Path.open

    def denied(self, *args, **kwargs):  # as chmod 000 would, also for root (who reads any file)
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    assert cli.main(["general", "--device", "cpu", "--artifacts", str(tmp_path / "a"), "--corpus", str(locked)]) == 2
    assert f"cannot read corpus file {locked} (Permission denied)" in _one_line_error(capsys)


# --- a corpus file: documents and blocks ---------------------------------------------------


def test_documents_are_paragraphs_or_lines(tmp_path):
    paragraphs, lines = _write(tmp_path / "p.txt", PARAGRAPHS), _write(tmp_path / "l.txt", ONE_PER_LINE)
    assert list(data.general_corpus_lines(str(paragraphs))) == [
        "First document, line one. First document, line two.", "Second document.", "Third document."]
    assert list(data.general_corpus_lines(str(lines))) == ["One.", "Two, a longer line.", "Three."]
    found = check_corpus_file(paragraphs)
    assert (found.layout, found.documents, found.path) == ("paragraphs", 3, paragraphs)
    assert found.sha256 == hashlib.sha256(paragraphs.read_bytes()).hexdigest()
    assert check_corpus_file(lines)[2:] == ("lines", 3)
    with pytest.raises(DataIntegrityError, match=r"bad\.txt, line 3: not valid UTF-8"):
        check_corpus_file(_write(tmp_path / "bad.txt", b"one\n\ntwo \xff\n"))
    empty = _write(tmp_path / "e.txt", "")
    assert get_profile("smoke", general_corpus=empty).general_corpus == str(empty)  # a Path is kept as text
    with pytest.raises(CorpusFileError, match="holds no text"):
        check_corpus_file(empty)  # what a profile checks is only that the file is there: reading it is this


def _synthetic_text(documents: int, words: int, seed: int = 0) -> list[str]:
    vocab = ("the river film city music small old new played north station league church team "
             "season album house school would first years war game early later song county").split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocab) for _ in range(words)) + " ." for _ in range(documents)]


@pytest.mark.parametrize("layout", ["paragraphs", "lines"])
def test_a_corpus_file_becomes_blocks_like_wikitext_lines(tmp_path, tok, layout):
    docs = _synthetic_text(12, 25)
    if layout == "paragraphs":  # each document over two lines, a blank line between documents
        text = "\n\n".join(f"{d[: len(d) // 2].rstrip()}\n{d[len(d) // 2:].lstrip()}" for d in docs) + "\n"
        docs = [" ".join(part.strip() for part in (d[: len(d) // 2], d[len(d) // 2:])) for d in docs]
    else:
        text = "\n".join(docs) + "\n"
    path = _write(tmp_path / "mine.txt", text)
    assert check_corpus_file(path).documents == 12 and check_corpus_file(path).layout == layout
    assert list(data.general_corpus_lines(str(path))) == docs
    tokens = sum(len(ids) for ids in tok(docs, add_special_tokens=False)["input_ids"])
    blocks = data.corpus_blocks(tok, 16, corpus=str(path))
    assert len(blocks) == tokens // 14 > 10  # one stream of the documents' tokens, cut into [CLS] 14 [SEP]
    assert blocks["input_ids"] == data.corpus_blocks(tok, 16, lines=docs)["input_ids"]
    assert len(data.corpus_blocks(tok, 16, corpus=str(path), max_blocks=3)) == 3
    assert data.corpus_blocks(tok, 16, split="valid", max_blocks=2, corpus=str(path))["input_ids"] == \
        data.corpus_blocks(tok, 16, split="valid", max_blocks=2)["input_ids"]  # held-out: WikiText-2's, always
    assert estimate.general_blocks(get_profile("cpu", general_corpus=str(path))) > 0  # scaled by word count
    with pytest.raises(CorpusFileError, match=r"mine\.txt is too short: its \d+ tokens make no block of 512"):
        data.corpus_blocks(tok, 512, corpus=str(path))


def test_the_file_is_recorded_only_when_one_is_used(tmp_path, monkeypatch):
    """The settings general distillation starts with, without training it: ``corpus_file`` for a file only."""
    class Started(Exception):
        pass

    def capture(*args, settings, **kwargs):
        raise Started(settings)

    monkeypatch.setattr(pipeline, "general_distill", capture)
    path = _write(tmp_path / "mine.txt", "\n".join(_synthetic_text(40, 30)) + "\n")
    records = {}
    for name, corpus in (("file", str(path)), ("wikitext", "wikitext-2")):
        profile = get_profile("smoke", general_corpus=corpus, corpus_max_blocks=4, max_seq_len_general=32)
        with pytest.raises(Started) as started:
            pipeline.run_general_distillation(profile, tmp_path / name, "cpu")
        records[name] = started.value.args[0]
    assert records["file"]["corpus_file"] == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert "corpus_file" not in records["wikitext"]  # the records of WikiText runs stay as they were
    assert records["file"]["corpus"] != records["wikitext"]["corpus"]


# --- one real run: what --set and --corpus record, and the refusal of other settings ---------


@pytest.fixture(scope="module")
def run_with_set_and_corpus(tmp_path_factory):
    """``run general --profile smoke --set general_lr=1e-3 --corpus FILE`` headless (about 20 s)."""
    root = tmp_path_factory.mktemp("overrides")
    docs = _synthetic_text(30, 40, seed=1)
    corpus = _write(root / "my corpus.txt", "\n\n".join(docs) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = ["general", "--profile", "smoke", "--device", "cpu", "--artifacts", str(root / "artifacts"),
            "--set", "general_lr=1e-3", "--corpus", str(corpus)]
    done = subprocess.run([sys.executable, "-m", "tinybert_lib", "run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"headless run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return SimpleNamespace(root=root, corpus=corpus, args=args, stdout=done.stdout)


def test_set_and_corpus_are_recorded_in_the_settings(run_with_set_and_corpus):
    run = run_with_set_and_corpus
    summary = pipeline.summary(run.root / "artifacts", "general")
    settings = summary["settings"]
    assert settings["profile"]["general_lr"] == 0.001
    assert settings["corpus_file"] == {"path": str(run.corpus),
                                       "sha256": hashlib.sha256(run.corpus.read_bytes()).hexdigest()}
    assert summary["steps"] > 0 and json.loads(run.stdout.strip().splitlines()[-1])["stage"] == "general"


def test_other_settings_are_refused_with_the_difference_named(run_with_set_and_corpus, capsys):
    run = run_with_set_and_corpus
    without_set = [a for a in run.args if a not in ("--set", "general_lr=1e-3")]
    assert cli.main(without_set) == 1
    err = _one_line_error(capsys)
    assert "general_lr: 0.001 -> 5e-05" in err and "--rebuild" in err
    without_corpus = run.args[: run.args.index("--corpus")]
    assert cli.main(without_corpus) == 1
    assert "corpus_file.sha256: " in _one_line_error(capsys)
    changed = run.corpus.read_text() + "\none more document .\n"
    other = _write(run.root / "other.txt", changed)
    assert cli.main([*without_corpus, "--corpus", str(other)]) == 1
    assert "corpus_file.path: " in _one_line_error(capsys)
    assert cli.main(run.args) == 0  # the same command: the finished stage is reused
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stage"] == "general"
