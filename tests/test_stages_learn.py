"""Each training stage learns: it moves the weights and fits a small fixed training set well above chance.

A stage that never updates the student (a detached loss, an optimiser over the wrong parameters, a
frozen encoder) would still run end to end and print numbers; these tests notice it. The sets are
the first 48 SST-2 training sentences, scored on themselves: fitting them is the least a working
stage must do.
"""

from __future__ import annotations

import pytest
import torch

import tinybert_lib as tl
from tinybert_lib import distill
from tinybert_lib.losses import layer_map, make_projections
from tinybert_lib.training import FitConfig

ROWS = 48
FIT = 0.85  # the majority class of these rows is 54%; a stage that learns reaches 95-100%


@pytest.fixture(scope="module")
def train():
    return tl.data.load_sst2("train", limit=ROWS)


@pytest.fixture(scope="module")
def finetuned(train):
    teacher = tl.load_teacher("minilm")
    before = _encoder_weights(teacher)
    profile = tl.get_profile("smoke", finetune_epochs=2, finetune_batch_size=8, finetune_lr=1e-4,
                             classifier_pooling="mean", log_every=100)
    result = distill.finetune_teacher(teacher, train, train, "sst2", FitConfig.for_stage(profile, "finetune"),
                                      pooling=profile.classifier_pooling, device="cpu")
    return result, before


def _encoder_weights(model: tl.Bert) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.bert.state_dict().items() if ".layer." in k and k.endswith("weight")}


def _unmoved(model: tl.Bert, before: dict[str, torch.Tensor]) -> list[str]:
    after = model.bert.state_dict()
    return [k for k, v in before.items() if torch.equal(v, after[k])]


def _majority(rows) -> float:
    positives = sum(rows["label"])
    return max(positives, len(rows) - positives) / len(rows)


def test_teacher_finetuning_moves_every_layer_and_fits_its_training_rows(finetuned, train):
    result, before = finetuned
    assert _unmoved(result.model, before) == []
    fit = tl.evaluate.accuracy(result.model, train)
    assert fit >= FIT > _majority(train) + 0.2, f"fine-tuned teacher fits {fit:.2f} of its own training rows"


def test_task_distillation_moves_the_student_and_fits_the_training_rows(finetuned, train):
    teacher = finetuned[0].model
    tl.set_seed(0)
    student = tl.build_student("minilm-3l-192d", teacher=teacher)
    before = _encoder_weights(student)
    profile = tl.get_profile("smoke", intermediate_batch_size=8, prediction_batch_size=8, intermediate_epochs=3, intermediate_lr=1e-3,
                             prediction_epochs=10, prediction_lr=1e-3, log_every=100)
    tokens = tl.data.tokenize_task(train, "sst2", teacher.tokenizer, profile.max_seq_len_task)

    # step 1: the layer losses against the fine-tuned teacher fall on the rows it trained on
    mapping = layer_map(3, teacher.config.num_hidden_layers)
    projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, 3)
    start = distill.distillation_loss_on(teacher, student, tokens, mapping, projections, 8)["total"]
    s1 = distill.intermediate_distill(teacher, student, train, train, "sst2", FitConfig.for_stage(profile, "intermediate"),
                                      mapping=mapping, projections=projections, device="cpu")
    assert _unmoved(s1.model, before) == []
    assert s1.metrics["dev_total"] < 0.9 * start, f"step 1 took the layer loss from {start:.2f} to {s1.metrics['dev_total']:.2f}"

    # step 2: soft targets alone (no gold labels) make the student fit the gold labels of those rows
    stepped = _encoder_weights(s1.model)
    s2 = distill.prediction_distill(teacher, s1.model, train, train, "sst2", FitConfig.for_stage(profile, "prediction"),
                                    device="cpu")
    assert _unmoved(s2.model, stepped) == []
    fit = tl.evaluate.accuracy(s2.model, train)
    assert fit >= FIT > _majority(train) + 0.2, f"distilled student fits {fit:.2f} of its training rows"
