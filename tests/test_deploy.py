"""Lesson 12: int8 quantization by hand, the four shipped variants, their errors and the predict command."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from torch import nn

from tinybert_lib import build_student, deploy, set_seed
from tinybert_lib.data import load_sst2
from tinybert_lib.quantization import dequantize, int8_linear, quantize_activation, quantize_weight

# ONNX Runtime and PyTorch run the same float32 graph with other kernels: their logits differ by
# float rounding (about 1e-6 of the logits' scale here); a wrong graph differs by far more.
ONNX_RTOL = 1e-4


def _torch_int8(linear: nn.Linear) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)[0]


@pytest.mark.parametrize("shape", [(192, 768), (768, 192), (384, 2)])
def test_int8_linear_by_hand_equals_pytorch(shape):
    torch.manual_seed(0)
    linear = nn.Linear(*shape)
    x = torch.randn(3, 5, shape[0]) * 2 + 0.3
    quantized = _torch_int8(linear)
    q_w, scale = quantize_weight(linear.weight.detach())
    assert torch.equal(q_w, quantized.weight().int_repr())
    assert scale == pytest.approx(quantized.weight().q_scale(), rel=1e-6)
    ours, theirs = int8_linear(x, linear.weight.detach(), linear.bias.detach()), quantized(x)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-5
    # and int8 is an approximation: about 1% of the output's scale away from fp32, not 0 and not 100%
    error = ((linear(x) - theirs).abs().max() / theirs.abs().max()).item()
    assert 1e-4 < error < 0.05, error


def test_activation_quantization_keeps_zero_exact():
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    q, scale, zero_point = quantize_activation(x)
    assert dequantize(q, scale, zero_point)[1].item() == 0.0
    assert (dequantize(q, scale, zero_point) - x).abs().max().item() <= scale / 2 + 1e-7


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, teacher):
    """A student with a confident head, shipped in all four variants."""
    set_seed(0)
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    student.add_classifier(2, label_names=("negative", "positive"))
    with torch.no_grad():  # large, distinct logits: int8 noise must not decide the class
        student.classifier.weight.normal_(0, 2.0)
    return deploy.ship(student.eval(), tmp_path_factory.mktemp("deploy") / "student"), student


def test_ship_writes_every_variant(shipped):
    folder, _ = shipped
    for variant in deploy.VARIANTS:
        assert deploy.variant_file(folder, variant).is_file(), variant
    fp32, int8 = (deploy.variant_file(folder, v).stat().st_size for v in ("onnx fp32", "onnx int8"))
    assert int8 < fp32 / 3, (fp32, int8)  # int8 weights, embedding tables included: about a quarter


@pytest.mark.parametrize("onnx", [False, True])
def test_fp32_variants_give_the_course_models_logits(shipped, onnx):
    folder, student = shipped
    dev = list(load_sst2("dev", limit=48)["sentence"])
    loaded = deploy.load_classifier(folder, onnx=onnx)
    batch = dict(student.tokenizer(dev, padding=True, return_tensors="pt"))
    with torch.no_grad():
        ours = student(**batch).logits
    theirs = loaded.run(batch)
    assert ((theirs - ours).abs().max() / ours.abs().max()).item() < ONNX_RTOL


@pytest.mark.parametrize("onnx", [False, True])
def test_int8_variants_agree_with_fp32(shipped, onnx):
    folder, _ = shipped
    dev = load_sst2("dev", limit=200)
    sentences, labels = list(dev["sentence"]), list(dev["label"])
    fp32 = deploy.load_classifier(folder, onnx=onnx)
    int8 = deploy.load_classifier(folder, onnx=onnx, int8=True)
    batch = dict(fp32.tokenizer(sentences, padding=True, return_tensors="pt"))
    agree = (fp32.run(batch).argmax(-1) == int8.run(batch).argmax(-1)).float().mean().item()
    assert agree >= 0.97, agree
    assert abs(deploy.dev_accuracy(fp32, sentences, labels) - deploy.dev_accuracy(int8, sentences, labels)) <= 0.03


def test_predict_answers_in_words(shipped):
    folder, _ = shipped
    answers = deploy.predict(deploy.load_classifier(folder, onnx=True, int8=True), ["a gripping film", "bad ."])
    assert [label in ("negative", "positive") for label, _ in answers] == [True, True]
    assert all(0.5 <= p <= 1.0 for _, p in answers)


def test_missing_and_corrupt_files_say_how_to_rebuild(shipped, tmp_path):
    folder, _ = shipped
    with pytest.raises(deploy.DeploymentError, match="not a folder"):
        deploy.load_classifier(tmp_path / "nowhere")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / deploy.ONNX_INT8_FILE).unlink()
    with pytest.raises(deploy.DeploymentError, match="missing.*ship"):
        deploy.load_classifier(copy, onnx=True, int8=True)
    (copy / deploy.ONNX_FILE).write_bytes((folder / deploy.ONNX_FILE).read_bytes()[:5000])  # a truncated copy
    with pytest.raises(deploy.DeploymentError, match="corrupt or incomplete"):
        deploy.load_classifier(copy, onnx=True)
    (copy / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(deploy.DeploymentError, match="cannot load"):
        deploy.load_classifier(copy)


def test_compare_variants_measures_every_row(shipped):
    folder, _ = shipped
    dev = load_sst2("dev", limit=40)
    rows = deploy.compare_variants({"student": folder}, list(dev["sentence"]), list(dev["label"]), threads=1, repeats=2)
    assert [r["variant"] for r in rows] == list(deploy.VARIANTS)
    for r in rows:
        assert r["size_mb"] > 0 and r["latency_b1_ms"] > 0 and r["throughput_b32"] > 0 and 0 <= r["accuracy"] <= 1
        assert r["threads"] == 1


def test_predict_command(shipped, capsys):
    from tinybert_lib.__main__ import main

    folder, _ = shipped
    assert main(["predict", str(folder), "a gripping film", "--onnx", "--int8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# onnx int8")
    assert out[1].split("\t")[0] in ("negative", "positive") and out[1].endswith("a gripping film")
    assert main(["predict", str(folder / "absent"), "x"]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_mean_pooled_student_ships_with_the_same_logits(teacher, tmp_path):
    """The cpu profile's head reads the mean over tokens: ONNX must trace that head, not BERT's pooler."""
    set_seed(0)
    student = build_student("minilm-3l-192d", teacher=teacher, num_labels=2)
    student.add_classifier(2, pooling="mean", label_names=("negative", "positive"))
    with torch.no_grad():
        student.classifier.weight.normal_(0, 2.0)
    folder = deploy.ship(student.eval(), tmp_path / "mean")
    batch = dict(student.tokenizer(list(load_sst2("dev", limit=16)["sentence"]), padding=True, return_tensors="pt"))
    with torch.no_grad():
        ours = student(**batch).logits
    theirs = deploy.load_classifier(folder, onnx=True).run(batch)
    assert ((theirs - ours).abs().max() / ours.abs().max()).item() < ONNX_RTOL
