"""The course BERT against transformers' BERT on the same checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import BertForSequenceClassification, BertModel

from tinybert_lib import Bert, BertConfig, build_student
from tinybert_lib.teachers import _packaged_minilm_folder


@pytest.fixture(scope="module")
def hf_bert():
    return BertModel.from_pretrained(str(_packaged_minilm_folder()), attn_implementation="eager").eval()


# The course's parity convention (lesson 01 states the same): compare at real positions only (hidden
# states of real tokens, attention rows of real query tokens), relative to the values' scale.
# Float32 rounding gives ~1e-7 there; a bug such as a wrong attention scale gives 1e-2 or more.
PARITY_RTOL = 1e-4


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


def worst_differences(ours, theirs, attention_mask) -> tuple[float, float]:
    real = attention_mask.bool()
    rows = real[:, None, :, None].expand_as(ours.attention_probs[0])
    hidden = max(rel_diff(a[real], b[real]) for a, b in zip(ours.hidden_states, theirs.hidden_states))
    probs = max(rel_diff(a[rows], b[rows]) for a, b in zip(ours.attention_probs, theirs.attentions))
    return hidden, probs


def test_hidden_states_match_transformers_on_padded_batch(teacher, hf_bert, sentences):
    batch = teacher.tokenizer(sentences, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding to test masking"
    with torch.no_grad():
        ours = teacher(**batch)
        theirs = hf_bert(**batch, output_hidden_states=True, output_attentions=True)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 7
    hidden, probs = worst_differences(ours, theirs, batch["attention_mask"])
    assert hidden < PARITY_RTOL
    assert probs < PARITY_RTOL


@pytest.mark.parametrize("bug", ["scale", "mask"])
def test_parity_check_catches_a_deliberate_bug(teacher, hf_bert, sentences, monkeypatch, bug):
    """The tolerance is loose enough for any CPU, yet a real bug still fails it."""
    import tinybert_lib.bert as bert_module

    if bug == "scale":  # divide the scores by d instead of sqrt(d)
        monkeypatch.setattr(bert_module, "math", SimpleNamespace(sqrt=lambda x: float(x)))
    batch = teacher.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        if bug == "mask":  # let real tokens attend to padded keys
            ours = teacher(input_ids=batch["input_ids"])
        else:
            ours = teacher(**batch)
        theirs = hf_bert(**batch, output_hidden_states=True, output_attentions=True)
    hidden, probs = worst_differences(ours, theirs, batch["attention_mask"])
    assert hidden > 100 * PARITY_RTOL and probs > 100 * PARITY_RTOL


def test_output_shapes_and_raw_scores(teacher, sentences):
    batch = teacher.tokenizer(sentences, padding=True, return_tensors="pt")
    b, t = batch["input_ids"].shape
    with torch.no_grad():
        out = teacher(**batch)
    assert out.embeddings.shape == (b, t, 384)
    assert out.embeddings is out.hidden_states[0]
    assert len(out.attention_scores) == len(out.attention_probs) == 6
    assert out.attention_scores[0].shape == (b, 12, t, t)
    assert out.logits is None
    # Raw scores are unmasked: padded keys keep ordinary values, yet get ~0 probability.
    pad = ~batch["attention_mask"].bool()
    row = pad.nonzero()[0]
    scores, probs = out.attention_scores[0][row[0]], out.attention_probs[0][row[0]]
    assert scores[..., row[1]].abs().max() < 1e3
    assert probs[..., row[1]].max() < 1e-6
    # Probabilities are the masked softmax of the scores.
    mask = batch["attention_mask"][:, None, None, :].bool()
    expect = torch.softmax(out.attention_scores[2].masked_fill(~mask, float("-inf")), dim=-1)
    assert torch.allclose(out.attention_probs[2], expect, atol=1e-6)


def test_classification_head_matches_transformers(teacher, sentences, tmp_path):
    from tinybert_lib import export_hf, load_teacher

    torch.manual_seed(0)
    clf = load_teacher("minilm", num_labels=3).eval()
    folder = export_hf(clf, clf.tokenizer, tmp_path / "clf")
    hf = BertForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = teacher.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(clf(**batch).logits, hf(**batch).logits, atol=1e-4)


def test_from_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors"):
        Bert.from_folder(tmp_path)


def test_config_rejects_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="not divisible"):
        BertConfig(hidden_size=100, num_attention_heads=12)


def test_student_forward_and_grad(teacher, sentences):
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    batch = teacher.tokenizer(sentences, padding=True, return_tensors="pt")
    out = student(**batch)
    assert out.logits.shape == (3, 2)
    assert len(out.hidden_states) == 4 and out.hidden_states[1].shape[-1] == 192
    out.logits.sum().backward()
    assert student.bert.embeddings.word_embeddings.weight.grad is not None


def test_parameter_counts(teacher):
    assert teacher.num_parameters() == 22_713_216  # all-MiniLM-L6-v2 with its pooler
    assert teacher.num_parameters(encoder_only=True) < teacher.num_parameters()
