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


def test_results_table_records_per_sentence_correctness_beside_results_json(tmp_path, monkeypatch):
    """Each run's dev correctness goes to results_per_sentence.json; results.json keeps the keys lesson 10 prints."""
    import json
    from types import SimpleNamespace

    import torch
    from datasets import Dataset

    from tinybert_lib import ablations
    from tinybert_lib.profiles import get_profile

    labels = [1, 0, 1, 1, 0]
    dev = Dataset.from_dict({"sentence": [f"s{i}" for i in range(5)], "label": labels})
    fixed = {"teacher": [1, 1, 1, 1, 0], "final": [1, 0, 1, 1, 0], "student": [0, 0, 0, 0, 0]}
    model = {name: SimpleNamespace(name=name, config=SimpleNamespace(num_labels=2)) for name in fixed}
    figures = {"params": 1, "encoder_params": 1, "size_mb": 1.0, "latency_b1_ms": 1.0, "latency_b32_ms": 2.0,
               "throughput_b32": 16.0}

    def run_variant(variant, profile, artifacts_dir, seed, device=None, teacher=None):
        correct = "10110" if seed % 2 else "10100"
        return {"variant": variant.name, "seed": seed, "accuracy": correct.count("1") / 5, "train_rows": 16,
                "seconds": 0.1, "dev_correct": correct}

    monkeypatch.setattr(ablations, "run_variant", run_variant)
    monkeypatch.setattr(ablations, "get_finetuned_teacher", lambda *a, **k: model["teacher"])
    monkeypatch.setattr(ablations, "get_final_student", lambda *a, **k: model["final"])
    monkeypatch.setattr(ablations, "build_student", lambda *a, **k: model["student"])
    monkeypatch.setattr(ablations, "load_sst2", lambda split, limit=None: dev)
    monkeypatch.setattr(ablations, "_model_figures", lambda m, sentences, device: figures)
    monkeypatch.setattr(ablations, "correct_per_example", lambda m, data, **k: torch.tensor(fixed[m.name]).bool())
    out = tmp_path / "results.json"
    results = ablations.results_table(get_profile("smoke", ablation_seeds=2), tmp_path, variants=["tinybert", "mapping: top"],
                                      device="cpu", out_file=out)

    saved = json.loads(out.read_text())
    assert list(saved) == ["profile", "device", "latency_device", "torch_threads", "versions", "budget", "majority",
                           "rows", "runs", "paper"]  # what lesson 10's section 9 prints, unchanged
    assert all(list(r) == ["variant", "seed", "accuracy", "train_rows", "seconds"] for r in saved["runs"])
    assert [(r["variant"], r["seed"]) for r in saved["runs"]] == [("tinybert", 42), ("tinybert", 43), ("mapping: top", 42)]
    assert saved["rows"][0]["accuracy"] == pytest.approx(0.8) and saved["rows"][1]["accuracy"] == pytest.approx(0.6)
    per_sentence = json.loads((tmp_path / "results_per_sentence.json").read_text())
    assert per_sentence["dev_rows"] == 5 and per_sentence["labels"] == "10110"
    assert [(r["variant"], r["seed"], r["correct"]) for r in per_sentence["runs"]] == [
        ("tinybert", 42, "10100"), ("tinybert", 43, "10110"), ("mapping: top", 42, "10100")]
    assert per_sentence["models"] == {"teacher (fine-tuned)": "11110", "TinyBERT student (full run)": "10110"}
    assert results["per_sentence"] == per_sentence  # in memory as load_results gives it back
    assert ablations.load_results(out) == results
    table = ablations.paired_table(results)
    assert [(r["variant"], r["matched_seeds"], r["p_value"]) for r in table] == [("mapping: top", [42], 1.0)]
