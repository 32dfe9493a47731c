"""Shipping without ``trust_remote_code``: which exports need it, and the ONNX-only folder that never does."""

from __future__ import annotations

import json

import pytest
import torch

from tinybert_lib import build_student, deploy, export_hf, set_seed
from tinybert_lib.data import load_sst2

LABELS = ("negative", "positive")


def _student(teacher, pooling: str):
    """A small student with a confident two-class head reading ``pooling``."""
    set_seed(0)
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    student.add_classifier(2, pooling=pooling, label_names=LABELS)
    with torch.no_grad():  # large, distinct logits: a wrong pooling or graph must change the class
        student.classifier.weight.normal_(0, 2.0)
    return student.eval()


@pytest.fixture(scope="module", params=["mean", "cls"])
def onnx_only(request, teacher, tmp_path_factory):
    student = _student(teacher, request.param)
    return deploy.ship(student, tmp_path_factory.mktemp("onnx_only") / request.param, onnx_only=True), student


def test_onnx_only_folder_holds_graphs_config_and_tokenizer_only(onnx_only):
    folder, _ = onnx_only
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", deploy.ONNX_FILE, deploy.ONNX_INT8_FILE, "tokenizer.json"} <= names
    assert not {"model.safetensors", "model_int8.pt"} & names
    assert not [n for n in names if n.endswith(".py")], names  # no remote code to trust
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and "auto_map" not in config
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}


def test_stock_transformers_reads_it_without_remote_code(onnx_only):
    from transformers import AutoConfig, AutoTokenizer, BertConfig

    folder, student = onnx_only
    config = AutoConfig.from_pretrained(str(folder))  # trust_remote_code left at its default, False
    assert type(config) is BertConfig and config.id2label == {0: "negative", 1: "positive"}
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text = "a gripping , funny and moving film ."
    assert tokenizer(text)["input_ids"] == student.tokenizer(text)["input_ids"]


def test_onnx_only_logits_equal_the_pytorch_models(onnx_only):
    folder, student = onnx_only
    sentences = list(load_sst2("dev", limit=48)["sentence"])
    batch = dict(student.tokenizer(sentences, padding=True, return_tensors="pt"))
    with torch.no_grad():
        ours = student(**batch).logits
    theirs = deploy.load_classifier(folder, onnx=True).run(batch)
    assert (theirs - ours).abs().max().item() < 1e-4 * max(1.0, ours.abs().max().item())
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))  # the same 48 predictions
    int8 = deploy.load_classifier(folder, onnx=True, int8=True).run(batch)
    assert (int8.argmax(-1) == ours.argmax(-1)).float().mean().item() >= 0.9


def test_onnx_only_folder_in_the_predict_command(onnx_only, capsys):
    from tinybert_lib.__main__ import main

    folder, _ = onnx_only
    for flags in (["--onnx"], ["--onnx", "--int8"]):
        assert main(["predict", str(folder), "a gripping film", *flags]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[1].split("\t")[0] in LABELS
    assert main(["predict", str(folder), "a gripping film"]) == 1  # no PyTorch weights: says to add --onnx
    assert "--onnx" in capsys.readouterr().err
    with pytest.raises(deploy.DeploymentError, match="ONNX-only.*onnx=True"):
        deploy.load_classifier(folder)


def test_compare_variants_on_an_onnx_only_folder(onnx_only):
    folder, _ = onnx_only
    dev = load_sst2("dev", limit=32)
    rows = deploy.compare_variants({"student": folder}, list(dev["sentence"]), list(dev["label"]),
                                   variants=deploy.ONNX_ONLY_VARIANTS, threads=1, repeats=2)
    assert [r["variant"] for r in rows] == list(deploy.ONNX_ONLY_VARIANTS)


def test_a_headless_model_cannot_ship_onnx_only(teacher, tmp_path):
    encoder = build_student("minilm-3l-192d", teacher=teacher, num_labels=0)
    with pytest.raises(ValueError, match="needs a classifier"):
        deploy.ship(encoder, tmp_path / "encoder", onnx_only=True)
    assert not (tmp_path / "encoder").exists()


def test_cls_export_is_a_stock_bert_classifier(teacher, tmp_path):
    """A [CLS]-pooled head is transformers' own: its full export needs no remote code either."""
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    student = _student(teacher, "cls")
    folder = export_hf(student, student.tokenizer, tmp_path / "cls")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and "auto_map" not in config
    assert not list(folder.glob("*.py"))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))  # no trust_remote_code
    assert type(model) is BertForSequenceClassification


def test_mean_export_is_refused_without_remote_code(teacher, tmp_path):
    """transformers' Auto classes and pipeline refuse a mean-pooled export: no silent [CLS] pooler."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline

    student = _student(teacher, "mean")
    folder = export_hf(student, student.tokenizer, tmp_path / "mean")
    for load in (lambda: AutoConfig.from_pretrained(str(folder)),
                 lambda: AutoModelForSequenceClassification.from_pretrained(str(folder)),
                 lambda: pipeline("text-classification", model=str(folder), device="cpu")):
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            load()
