"""Tasks beyond SST-2: pair encoding, GLUE metrics, the loaders and their errors, and a smoke run of each task."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from datasets import Dataset

import tinybert_lib as tl
from conftest import MIRROR
from tinybert_lib import data, pipeline
from tinybert_lib.tasks import TASKS, Task, _metric, get_task, task_metrics

PAIRS = {
    "sentence1": ["The cat sat on the mat.", "He said the pie business doesn't fit the company's long-term growth strategy, "
                  "which was written years ago by a board that no longer exists.", "Short."],
    "sentence2": ["A cat was sitting on a mat.", "The pie business does not fit.", "Also a short one, but longer than the first."],
    "label": [1, 0, 1],
}


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


def test_the_course_tasks_and_an_unknown_name():
    assert list(TASKS) == ["sst2", "mrpc", "rte", "cola"]
    assert get_task("sst2").label_names == data.SST2_LABELS == ("negative", "positive")
    assert get_task("mrpc").label_names == ("not_equivalent", "equivalent")
    assert get_task("rte").label_names == ("entailment", "not_entailment")  # GLUE's id order
    assert get_task("cola").label_names == ("unacceptable", "acceptable")
    assert [get_task(n).is_pair for n in TASKS] == [False, True, True, False]
    assert [get_task(n).main_metric for n in TASKS] == ["accuracy", "f1", "accuracy", "matthews_correlation"]
    with pytest.raises(ValueError, match="unknown task 'qqp'; valid tasks: sst2, mrpc, rte, cola"):
        get_task("qqp")
    with pytest.raises(ValueError, match="unknown task 'qqp'"):
        tl.get_profile("smoke", task="qqp")


def test_a_wrong_description_fails_at_once():
    with pytest.raises(ValueError, match=r"column\(s\) \['text'\] are not among file_columns"):
        Task(name="x", text_fields=("text",), label_names=("a", "b"), files={"train": "t", "dev": "d"},
             file_columns=("sentence", "label"))
    with pytest.raises(ValueError, match="unknown metric"):
        Task(name="x", text_fields=("sentence",), label_names=("a", "b"), files={"train": "t", "dev": "d"},
             file_columns=("sentence", "label"), metrics=("spearman",))


# --------------------------------------------------------------------------------------
# Pairs are encoded as BERT encodes them
# --------------------------------------------------------------------------------------


def test_pair_tokenisation_equals_the_tokenizers_own_pair_encoding(teacher):
    tok = teacher.tokenizer
    dataset = Dataset.from_dict(PAIRS)
    encoded = data.tokenize_task(dataset, "mrpc", tok, max_length=24)
    for i, (a, b) in enumerate(zip(PAIRS["sentence1"], PAIRS["sentence2"])):
        reference = tok(a, b, truncation="longest_first", max_length=24)  # one pair at a time
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert encoded[i][key] == reference[key], (i, key)
    # [CLS] a [SEP] b [SEP], segment 0 then 1, built by hand for the pair short enough to fit
    a, b = (tok(s, add_special_tokens=False)["input_ids"] for s in (PAIRS["sentence1"][0], PAIRS["sentence2"][0]))
    assert encoded[0]["input_ids"] == [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id]
    assert encoded[0]["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    # too long: cut to 24 tokens from the longer sentence first, the short second one intact
    b1 = tok(PAIRS["sentence2"][1], add_special_tokens=False)["input_ids"]
    assert len(encoded[1]["input_ids"]) == 24 and encoded[1]["input_ids"][-len(b1) - 1:-1] == b1
    assert encoded["labels"] == PAIRS["label"] and encoded["length"] == [len(x) for x in encoded["input_ids"]]


def test_token_types_reach_the_model_through_the_loader(teacher):
    tok = teacher.tokenizer
    encoded = data.tokenize_task(Dataset.from_dict(PAIRS), "rte", tok, max_length=64)
    batch = next(iter(data.make_loader(encoded, 3, tok)))
    assert "token_type_ids" in batch and batch["token_type_ids"].shape == batch["input_ids"].shape
    for i, row in enumerate(encoded):  # each row's segments, then padding (type 0)
        n = len(row["input_ids"])
        assert batch["token_type_ids"][i, :n].tolist() == row["token_type_ids"]
        assert batch["token_type_ids"][i, n:].eq(0).all()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        typed = teacher(**inputs).hidden_states[-1]
        untyped = teacher(**{**inputs, "token_type_ids": torch.zeros_like(batch["token_type_ids"])}).hidden_states[-1]
    assert not torch.allclose(typed, untyped), "Bert.forward must read token_type_ids"


def test_single_sentence_tasks_tokenise_as_sst2_did(teacher, sentences):
    dataset = Dataset.from_dict({"sentence": sentences, "label": [1, 0, 1]})
    ours = data.tokenize_task(dataset, "cola", teacher.tokenizer, max_length=12)
    assert ours["input_ids"] == teacher.tokenizer(sentences, truncation=True, max_length=12)["input_ids"]
    assert ours.to_dict() == data.tokenize_task(dataset, "sst2", teacher.tokenizer, max_length=12).to_dict()


# --------------------------------------------------------------------------------------
# GLUE metrics against numbers worked out by hand
# --------------------------------------------------------------------------------------

# TP = 3 (rows 0, 3, 6), FP = 2 (rows 1, 7), FN = 1 (row 4), TN = 2 (rows 2, 5)
PREDS = [1, 1, 0, 1, 0, 0, 1, 1]
GOLD = [1, 0, 0, 1, 1, 0, 1, 0]


def test_metrics_equal_hand_computed_values():
    assert _metric("accuracy", PREDS, GOLD) == pytest.approx(5 / 8)
    # precision 3/5, recall 3/4: F1 = 2 * 0.6 * 0.75 / 1.35 = 2/3
    assert _metric("f1", PREDS, GOLD) == pytest.approx(2 / 3)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 2) / sqrt(5*4*4*3)
    assert _metric("matthews_correlation", PREDS, GOLD) == pytest.approx(4 / math.sqrt(240))
    assert _metric("matthews_correlation", [1] * 8, GOLD) == 0.0  # one class predicted: no correlation
    assert _metric("f1", [0] * 8, GOLD) == 0.0


def test_task_metrics_in_the_tasks_order_from_tensors_or_lists():
    assert task_metrics("mrpc", torch.tensor(PREDS), torch.tensor(GOLD)) == pytest.approx({"f1": 2 / 3, "accuracy": 5 / 8})
    assert list(task_metrics("mrpc", PREDS, GOLD)) == ["f1", "accuracy"]
    assert task_metrics("cola", PREDS, GOLD) == pytest.approx({"matthews_correlation": 4 / math.sqrt(240)})
    assert task_metrics("rte", PREDS, GOLD) == task_metrics("sst2", PREDS, GOLD) == {"accuracy": 5 / 8}
    with pytest.raises(ValueError, match="7 predictions for 8 labels"):
        task_metrics("sst2", PREDS[:7], GOLD)


# --------------------------------------------------------------------------------------
# Loaders on the mirror (rows and labels as SOURCES.md gives them)
# --------------------------------------------------------------------------------------

ROWS = {"mrpc": (3_668, 408), "rte": (2_490, 277), "cola": (8_551, 1_043)}
LABELS = {"mrpc": ({0: 1_194, 1: 2_474}, {0: 129, 1: 279}), "rte": ({0: 1_249, 1: 1_241}, {0: 146, 1: 131}),
          "cola": ({0: 2_528, 1: 6_023}, {0: 322, 1: 721})}


@pytest.mark.parametrize("name", ["mrpc", "rte", "cola"])
def test_task_loaders_on_the_mirror(on_mirror, name):
    task = get_task(name)
    for split, rows, labels in zip(("train", "dev"), ROWS[name], LABELS[name]):
        ds = data.load_task(name, split)
        assert len(ds) == rows and ds.column_names == [*task.text_fields, "label"]
        assert {c: ds["label"].count(c) for c in sorted(set(ds["label"]))} == labels
        for field in task.text_fields:
            assert all(s and s == s.strip() for s in ds[field])
    assert data.load_task(name, "dev", limit=5).to_dict() == data.load_task(name, "dev")[:5]


def test_each_files_quirk_is_read(on_mirror):
    mrpc = data.load_task("mrpc", "dev", limit=1)[0]  # a byte-order mark before the header; a quote kept as text
    assert mrpc["sentence2"] == '"The foodservice pie business does not fit our long-term growth strategy.'
    assert mrpc["label"] == 1
    rte = data.load_task("rte", "dev", limit=1)[0]  # string labels
    assert rte["sentence2"] == "Christopher Reeve had an accident." and rte["label"] == 1  # not_entailment
    cola = data.load_task("cola", "train", limit=1)[0]  # no header: the first line is a row
    assert cola == {"sentence": "Our friends won't buy this analysis, let alone the next one we propose.", "label": 1}
    assert data.load_task("cola", "dev")[-1]["sentence"]  # the last row, without a final newline


# --------------------------------------------------------------------------------------
# Errors name the file and the line
# --------------------------------------------------------------------------------------


def test_an_unknown_label_names_the_file_and_the_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(tmp_path))
    (tmp_path / "rte").mkdir()
    bad = tmp_path / "rte" / "dev.tsv"
    bad.write_text("index\tsentence1\tsentence2\tlabel\n0\tA dog barks.\tAn animal barks.\tentailment\n"
                   "1\tIt rains.\tThe sun is out.\tcontradiction\n", encoding="utf-8")
    with pytest.raises(data.DataIntegrityError,
                       match=rf"{bad}, line 3: unknown label 'contradiction' in column 'label' \(task 'rte' labels: "
                             r"entailment, not_entailment\)"):
        data.load_task("rte", "dev")


def test_a_wrong_column_names_the_file_and_the_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYBERT_DATA_DIR", str(tmp_path))
    (tmp_path / "mrpc").mkdir()
    short = tmp_path / "mrpc" / "train.tsv"  # line 3 lost its second sentence
    short.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA cat sat.\tA cat was sitting.\n"
                     "0\t3\t4\tIt rains.\n", encoding="utf-8")
    with pytest.raises(data.DataIntegrityError, match=rf"{short}, line 3: expected 5 tab-separated fields .* got 4 field"):
        data.load_task("mrpc", "train")

    # a task of your own whose file has other columns than its description says
    own = tmp_path / "own.tsv"
    own.write_text("text\tlabel\ngood film\t1\n", encoding="utf-8")
    task = Task(name="own", text_fields=("sentence",), label_names=("bad", "good"), files={"train": str(own), "dev": str(own)},
                file_columns=("sentence", "label"))
    with pytest.raises(data.DataIntegrityError, match=rf"(?s){own}, line 1: expected header \['sentence', 'label'\], "
                                                      r"got \['text', 'label'\].*Task.file_columns"):
        data.load_task(task, "train")


def test_a_task_of_your_own_loads_from_any_path(tmp_path):
    own = tmp_path / "pairs.tsv"
    own.write_text("first\tsecond\tverdict\nA cat sat.\tA cat was sitting.\tsame\nIt rains.\tIt is sunny.\tdifferent\n",
                   encoding="utf-8")
    task = Task(name="own-pairs", text_fields=("sentence1", "sentence2"), label_names=("different", "same"),
                files={"train": str(own), "dev": str(own)}, file_columns=("first", "second", "verdict"),
                text_columns=("first", "second"), label_column="verdict", labels_in_file="name")
    assert data.load_task(task, "dev").to_dict() == {"sentence1": ["A cat sat.", "It rains."],
                                                     "sentence2": ["A cat was sitting.", "It is sunny."], "label": [1, 0]}
    with pytest.raises(data.DataNotFoundError, match="absolute path"):
        data.load_task(replace(task, files={"train": "nowhere.tsv", "dev": "nowhere.tsv"}), "train")


# --------------------------------------------------------------------------------------
# Augmenting pairs, folders, records
# --------------------------------------------------------------------------------------


def test_each_sentence_of_a_pair_is_augmented_the_other_kept(teacher):
    profile = tl.get_profile("smoke", augment_n=3, augment_k=4, augment_p=0.5, augment_limit=None)
    source = Dataset.from_dict(PAIRS)
    out, stats = tl.augment.augment(source, teacher, **profile.augment_settings(), text_column=("sentence1", "sentence2"), progress=False)
    assert out.column_names == ["sentence1", "sentence2", "label", "is_original"]
    assert sum(out["is_original"]) == 3 and len(out) <= 3 * (2 * 3 + 1)
    assert stats.source == 3 and stats.rows == len(out)
    changed = {"sentence1": 0, "sentence2": 0}
    originals = {}
    for row in out:
        if row["is_original"]:
            originals = row
            continue
        diff = [c for c in ("sentence1", "sentence2") if row[c] != originals[c]]
        assert len(diff) == 1 and row["label"] == originals["label"], row  # one sentence changed, the label copied
        changed[diff[0]] += 1
    assert changed["sentence1"] > 0 and changed["sentence2"] > 0
    # the first sentence's new rows are those a one-column run gives (same seeds)
    alone = tl.augment.augment(source.remove_columns("sentence2"), teacher, **profile.augment_settings(), text_column="sentence1", progress=False).dataset
    assert [r["sentence1"] for r in out if r["sentence2"] in PAIRS["sentence2"] and not r["is_original"]
            and r["sentence1"] not in PAIRS["sentence1"]] == [s for s, o in zip(alone["sentence1"], alone["is_original"]) if not o]


def test_folders_keep_sst2s_names_and_records_keep_sst2s_keys(tmp_path):
    names = {stage: pipeline.stage_dir(tmp_path, stage).name for stage in pipeline.STAGES}
    assert names == {"general": "general_student", "finetune": "teacher_sst2", "augment": "augmented_sst2",
                     "intermediate": "task_step1", "prediction": "task_step2"}
    assert [pipeline.stage_dir(tmp_path, stage, "mrpc").name for stage in pipeline.STAGES] == [
        "general_student", "teacher_mrpc", "augmented_mrpc", "task_step1_mrpc", "task_step2_mrpc"]
    # an SST-2 record has no task key, as before tasks existed, so SST-2 artifacts already built stay valid
    assert tl.pipeline._task_record(get_task("sst2")) == {} and tl.pipeline._task_record(get_task("cola")) == {"task": "cola"}


def test_cli_names_the_valid_tasks(capsys):
    from tinybert_lib.cli import main

    assert main(["finetune", "--profile", "smoke", "--task", "qnli"]) == 2
    assert "unknown task 'qnli'; valid tasks: sst2, mrpc, rte, cola" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Every stage, end to end, for each task (smoke profile, tiny limits, one shared general student)
# --------------------------------------------------------------------------------------

TINY = dict(train_limit=24, dev_limit=16, augment_limit=8, corpus_max_blocks=16, max_seq_len_general=32)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An artifacts folder holding the general student (shared by every task)."""
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror {MIRROR} not found")
    folder = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYBERT_DATA_DIR", str(MIRROR))
        pipeline.run_stage("general", tl.get_profile("smoke", **TINY), folder, "cpu")
    return folder


@pytest.mark.parametrize("name", ["mrpc", "rte", "cola"])
def test_every_stage_runs_for_the_task(on_mirror, artifacts, name):
    task = get_task(name)
    profile = tl.get_profile("smoke", **TINY, task=name)
    results = {stage: pipeline.run_stage(stage, profile, artifacts, "cpu") for stage in list(pipeline.STAGES)[1:]}
    for stage in list(pipeline.STAGES)[1:]:
        assert pipeline.is_done(artifacts, stage, name), stage
    dev_keys = [f"dev_{m}" for m in task.metrics]
    assert list(results["finetune"].metrics) == dev_keys
    assert list(results["prediction"].metrics) == [*dev_keys, f"last_epoch_dev_{task.main_metric}"]
    augmented = results["augment"]
    assert augmented.column_names == [*task.text_fields, "label", "is_original"] and len(augmented) > 24
    final = json.loads((pipeline.stage_dir(artifacts, "prediction", name) / "model" / "config.json").read_text())
    assert list(final["id2label"].values()) == list(task.label_names)
    assert pipeline.summary(artifacts, "prediction", name)["settings"]["task"] == name
    # SST-2's folders are untouched, the general student is the shared one
    assert not pipeline.is_done(artifacts, "finetune") and not pipeline.is_done(artifacts, "prediction")
