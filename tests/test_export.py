"""A trained course model exported as a Hugging Face folder works in transformers.pipeline."""

from __future__ import annotations

import json

import pytest

import torch
from transformers import pipeline

from tinybert_lib import build_student, export_hf, set_seed


def test_pipeline_predictions_equal_course_model(teacher, sentences, tmp_path):
    set_seed(0)
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2).eval()
    student.add_classifier(2, label_names=("negative", "positive"))
    with torch.no_grad():  # a trained-looking head: make the two classes clearly different
        student.classifier.weight.normal_(0, 1.0)
    folder = export_hf(student, student.tokenizer, tmp_path / "student")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    clf = pipeline("text-classification", model=str(folder), device="cpu", top_k=None)
    with torch.no_grad():
        batch = student.tokenizer(sentences, padding=True, return_tensors="pt")
        probs = torch.softmax(student(**batch).logits, dim=-1)
    for sent_preds, ours in zip(clf(sentences), probs):
        theirs = {p["label"]: p["score"] for p in sent_preds}
        for i in range(2):
            assert abs(theirs[("negative", "positive")[i]] - ours[i].item()) < 1e-4


def test_export_overwrites_atomically(teacher, tmp_path):
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    folder = export_hf(student, student.tokenizer, tmp_path / "m")
    export_hf(student, student.tokenizer, folder)  # second export replaces the first
    siblings = sorted(p.name for p in tmp_path.iterdir())
    assert siblings == ["m"], siblings


def test_mean_pooled_head_exports_with_its_own_class(teacher, sentences, tmp_path):
    """A head trained on the mean over tokens must not be read by transformers' [CLS] pooler."""
    from transformers import AutoModelForSequenceClassification

    set_seed(0)
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    student.add_classifier(2, pooling="mean")
    student.eval()
    with torch.no_grad():
        student.classifier.weight.normal_(0, 1.0)
    folder = export_hf(student, student.tokenizer, tmp_path / "mean")
    assert (folder / "hf_mean_pooling.py").is_file()
    with pytest.raises(ValueError, match="trust_remote_code"):  # refused, not silently read with the [CLS] pooler
        AutoModelForSequenceClassification.from_pretrained(str(folder))
    theirs = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=True).eval()
    batch = student.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours, hf = student(**batch).logits, theirs(**batch).logits
    assert (ours - hf).abs().max() / ours.abs().max() < 1e-4
    # the [CLS] pooler would give other logits: the folder must not be read as a plain BERT classifier
    with torch.no_grad():
        cls_logits = student.classifier(student.bert.pooler(student(**batch).hidden_states[-1]))
    assert (cls_logits - ours).abs().max() > 1e-2
    from tinybert_lib.bert import Bert
    assert Bert.from_folder(folder).config.classifier_pooling == "mean"


def test_label_names_round_trip(teacher, tmp_path):
    """The class names survive export and reload; a fresh head of another size forgets them."""
    from tinybert_lib.bert import Bert

    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    student.add_classifier(2, label_names=("negative", "positive"))
    folder = export_hf(student, student.tokenizer, tmp_path / "named")
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert Bert.from_folder(folder).config.label_names == ("negative", "positive")
    assert Bert.from_folder(folder, num_labels=3).config.label_names is None
    unnamed = export_hf(build_student("minilm-3l-192d", teacher=teacher, num_labels=2), None, tmp_path / "plain")
    assert Bert.from_folder(unnamed).config.label_names is None  # LABEL_0/LABEL_1 name nothing
    with pytest.raises(ValueError, match="one name per label"):
        student.add_classifier(3, label_names=("negative", "positive"))
