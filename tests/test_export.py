"""A trained course model exported as a Hugging Face folder works in transformers.pipeline."""

from __future__ import annotations

import torch
from transformers import pipeline

from tinybert_lib import build_student, export_hf, set_seed


def test_pipeline_predictions_equal_course_model(teacher, sentences, tmp_path):
    set_seed(0)
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2).eval()
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
            assert abs(theirs[f"LABEL_{i}"] - ours[i].item()) < 1e-4


def test_export_overwrites_atomically(teacher, tmp_path):
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    folder = export_hf(student, student.tokenizer, tmp_path / "m")
    export_hf(student, student.tokenizer, folder)  # second export replaces the first
    siblings = sorted(p.name for p in tmp_path.iterdir())
    assert siblings == ["m"], siblings
