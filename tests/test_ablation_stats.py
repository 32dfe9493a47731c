"""Lesson 10's statistics: standard errors over seeds, chance-corrected accuracy, the 2-SE rule, the sweep record."""

from __future__ import annotations

import math
import statistics

import pytest

from tinybert_lib.ablations import _chance_corrected, compare, standard_error, sweep_figure


def test_standard_error_is_the_sample_sd_over_root_n():
    values = [0.80, 0.82, 0.86]
    assert standard_error(values) == pytest.approx(statistics.stdev(values) / math.sqrt(3))
    assert standard_error([0.8]) == 0.0  # one seed: no spread known


def test_chance_corrected_is_zero_for_one_class_and_one_for_the_teacher():
    assert _chance_corrected(0.509, majority=0.509, teacher=0.889) == 0.0
    assert _chance_corrected(0.889, majority=0.509, teacher=0.889) == pytest.approx(1.0)
    assert _chance_corrected(0.699, majority=0.509, teacher=0.889) == pytest.approx(0.5)
    assert math.isnan(_chance_corrected(0.6, majority=0.5, teacher=0.5))


def _results(**rows):
    return {"rows": [{"variant": name + " (ablation budget)", "accuracy": sum(a) / len(a), "seeds": len(a), "accuracies": a}
                     for name, a in rows.items()]}


def test_compare_calls_a_difference_real_only_beyond_two_standard_errors():
    results = _results(tinybert=[0.84, 0.85, 0.86], baseline=[0.80, 0.81, 0.82], close=[0.83, 0.85, 0.87], once=[0.79])
    real = compare(results, "tinybert", "baseline")
    assert real["difference"] == pytest.approx(0.04)
    assert real["se"] == pytest.approx(math.sqrt(2) * standard_error([0.84, 0.85, 0.86]))
    assert real["real"] and real["seeds"] == (3, 3)
    assert not compare(results, "tinybert", "close")["real"]  # 0.0 apart
    assert not compare(results, "tinybert", "once")["real"]  # a single seed has no standard error of its own
    assert compare(results, "tinybert", "once", single_seed_sd=0.01)["real"]  # 0.06 > 2 * sqrt(0.0058^2 + 0.01^2)
    with pytest.raises(KeyError, match="no row"):
        compare(results, "tinybert", "missing")


def test_sweep_figure_reads_accuracy_then_held_out_loss_then_any_figure():
    assert sweep_figure({"intermediate": {"dev_total": 3.14}, "prediction": {"dev_accuracy": 0.847}}) == \
        "prediction: dev accuracy 0.847"
    assert sweep_figure({"general": {"valid_total": 3.436}}) == "general: held-out distillation loss 3.44"
    assert sweep_figure({"general": {"train_total_at_step_155": 9.2}}) == "general: train total at step 155 9.20"
    assert sweep_figure({}) == "-"
