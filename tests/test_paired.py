"""Lesson 10's paired comparison of two models scored on the same dev sentences: McNemar's exact test, the
paired bootstrap, and the table that puts the paired test beside the spread over seeds for every ablation row."""

from __future__ import annotations

import json
import logging
import math
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from tinybert_lib.ablations import compare, load_results, paired_table
from tinybert_lib.evaluate import mcnemar, paired_bootstrap


def _pair(only_a: int, only_b: int, both_right: int = 0, both_wrong: int = 0, seed: int = 0) -> tuple[list[int], list[int]]:
    kinds = [(1, 0)] * only_a + [(0, 1)] * only_b + [(1, 1)] * both_right + [(0, 0)] * both_wrong
    random.Random(seed).shuffle(kinds)
    return [a for a, _ in kinds], [b for _, b in kinds]


# --- McNemar ------------------------------------------------------------------------------------------------


def test_mcnemar_on_a_case_computed_by_hand():
    # b = 3 sentences only A gets right, c = 1 only B: n = 4, tail P(X <= 1) = (1 + 4) / 16, p = 2 * 5/16
    a, b = [1, 1, 1, 0, 1, 0], [0, 0, 0, 1, 1, 0]
    assert mcnemar(a, b) == (3, 1, 0.625)
    assert mcnemar(b, a) == (1, 3, 0.625)  # symmetric: only the labels of b and c swap
    assert mcnemar([0] * 5, [1] * 5) == (0, 5, 0.0625)  # 2 / 2^5
    assert mcnemar([1, 0, 1, 0], [0, 1, 0, 1]) == (2, 2, 1.0)  # b = c: the doubled tail exceeds 1, capped
    assert mcnemar([1, 0, 1], [1, 0, 1]) == (0, 0, 1.0)  # they never disagree: nothing tells them apart


def _binomtest_two_sided(k: int, n: int) -> float:
    """scipy.stats.binomtest(k, n, 0.5).pvalue by its own definition: every outcome no likelier than k, exactly."""
    pmf = [Fraction(math.comb(n, i), 2 ** n) for i in range(n + 1)]
    return float(sum(p for p in pmf if p <= pmf[k]))


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_sentences():
    for only_a in range(0, 25):
        for only_b in range(0, 25):
            if only_a + only_b == 0:
                continue
            _, _, p = mcnemar(*_pair(only_a, only_b, both_right=7, both_wrong=3))
            assert p == pytest.approx(_binomtest_two_sided(only_a, only_a + only_b), rel=1e-12), (only_a, only_b)


# scipy.stats.binomtest(b, b + c, 0.5).pvalue, from scipy 1.17.1. scipy is not pinned in requirements.txt (it comes
# only with scikit-learn), and tests/test_dependencies.py refuses an unpinned import: its values are stored here.
SCIPY_BINOMTEST = {(39, 48): 0.3911909653007532, (4, 13): 0.049041748046875, (400, 480): 0.007707305043339153,
                   (3, 7): 0.34375, (0, 1000): 1.8665272370064378e-301}


@pytest.mark.parametrize("counts", sorted(SCIPY_BINOMTEST))
def test_mcnemar_matches_scipy_binomtest(counts):
    only_a, only_b = counts
    assert mcnemar(*_pair(only_a, only_b, both_right=50))[2] == pytest.approx(SCIPY_BINOMTEST[counts], rel=1e-12)


def test_the_tests_take_lists_arrays_tensors_and_recorded_strings():
    a, b = _pair(6, 2, both_right=10)
    expected = mcnemar(a, b)
    assert mcnemar(np.array(a, dtype=bool), torch.tensor(b)) == expected
    assert mcnemar("".join(map(str, a)), tuple(b)) == expected
    assert paired_bootstrap(torch.tensor(a).bool(), "".join(map(str, b)), n=200) == paired_bootstrap(a, b, n=200)


def test_the_tests_refuse_sentences_that_do_not_pair():
    with pytest.raises(ValueError, match="872 sentences and correct_b 871.*same sentences"):
        mcnemar([1] * 872, [1] * 871)
    with pytest.raises(ValueError, match="3 sentences and correct_b 2"):
        paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="one 0/1"):
        mcnemar([0.87, 0.5], [1, 0])  # accuracies, not per-sentence correctness
    with pytest.raises(ValueError, match="no sentences"):
        mcnemar([], [])


# --- paired bootstrap ---------------------------------------------------------------------------------------


def test_paired_bootstrap_is_reproducible_and_brackets_the_observed_difference():
    a, b = _pair(48, 39, both_right=715, both_wrong=70)
    diff, (low, high) = paired_bootstrap(a, b, n=4000, seed=1)
    assert diff == pytest.approx(9 / 872)
    assert low < diff < high
    assert paired_bootstrap(a, b, n=4000, seed=1) == (diff, (low, high))
    # about ±1.96 paired standard errors: the per-sentence difference is -1, 0 or +1, with variance (b + c)/n - diff^2
    se = math.sqrt((87 / 872 - diff ** 2) / 872)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    # and far narrower than the unpaired rule's: two accuracies taken as independent
    p = (sum(a) + sum(b)) / (2 * 872)
    assert high - low < 0.8 * 2 * 1.96 * math.sqrt(2 * p * (1 - p) / 872)
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap(a, b, n=0)


def test_paired_bootstrap_interval_covers_the_true_difference():
    """Sentences drawn from a population where A is right alone 6% of the time and B alone 4%: true difference 0.02."""
    rng = np.random.default_rng(7)
    kinds = np.array([(1, 0), (0, 1), (1, 1), (0, 0)])
    covered, repeats = 0, 200
    for r in range(repeats):
        drawn = kinds[rng.choice(4, size=872, p=[0.06, 0.04, 0.78, 0.12])]
        _, (low, high) = paired_bootstrap(drawn[:, 0], drawn[:, 1], n=1000, seed=r)
        covered += low <= 0.02 <= high
    assert 0.89 <= covered / repeats <= 0.99  # a 95% interval


# --- the comparison table from a results record -------------------------------------------------------------


def _record(per_sentence: bool = True, n: int = 400) -> dict:
    """A results.json (and, if asked, its per-sentence correctness) for three rows on n dev sentences."""
    rng = np.random.default_rng(0)
    truth = rng.random(n)  # how hard each sentence is: a shared difficulty makes the models agree

    def correct(skill: float, seed: int) -> str:
        noise = np.random.default_rng(seed).random(n) * 0.1
        return "".join("1" if t + e < skill else "0" for t, e in zip(truth, noise))

    runs = ([("tinybert", s, correct(0.85, s)) for s in (42, 43, 44)]
            + [("baseline", s, correct(0.65, 100 + s)) for s in (42, 43, 44)]
            + [("close", 42, correct(0.85, 7)), ("once worse", 42, correct(0.80, 8))])
    rows = []
    for name in ("tinybert", "baseline", "close", "once worse"):
        accs = [c.count("1") / n for v, _, c in runs if v == name]
        rows.append({"variant": name + " (ablation budget)", "accuracy": sum(accs) / len(accs), "seeds": len(accs),
                     "accuracies": accs})
    results = {"budget": {"dev_rows": n}, "rows": [{"variant": "teacher (fine-tuned)", "accuracy": 0.9, "seeds": 1}] + rows,
               "runs": [{"variant": v, "seed": s, "accuracy": c.count("1") / n} for v, s, c in runs]}
    if per_sentence:
        results["per_sentence"] = {"dev_rows": n, "runs": [{"variant": v, "seed": s, "correct": c} for v, s, c in runs]}
    return results


def test_paired_table_without_per_sentence_data_says_not_recorded():
    table = {r["variant"]: r for r in paired_table(_record(per_sentence=False))}
    assert list(table) == ["baseline", "close", "once worse"]  # every row but the reference
    for r in table.values():
        assert r["verdict"] == "not recorded" and r["p_value"] is None and r["p_values"] == [] and not r["decisive"]
    # the spread over seeds is still there
    assert table["baseline"]["seeds"] == 3 and table["baseline"]["se"] > 0
    assert table["baseline"]["beyond_2_se"] and table["close"]["se"] is None


def test_paired_table_puts_the_paired_test_beside_the_seeds():
    results = _record()
    table = {r["variant"]: r for r in paired_table(results, single_seed_sd=0.01)}
    base = table["baseline"]
    assert base["matched_seeds"] == [42, 43, 44] and len(base["p_values"]) == 3
    assert base["p_value"] == max(base["p_values"]) < 1e-6  # the largest per-seed p-value
    assert base["reference_only_right"] > base["row_only_right"]
    assert base["decisive"] and base["verdict"].startswith("decisive")
    c = compare(results, "baseline", "tinybert")
    assert (base["difference"], base["se_difference"], base["beyond_2_se"]) == (c["difference"], c["se"], c["real"])
    # a single-seed row is paired with the reference's run of the same seed only
    assert table["close"]["matched_seeds"] == [42]
    ref, close = (next(r["correct"] for r in results["per_sentence"]["runs"] if r["variant"] == v and r["seed"] == 42)
                  for v in ("tinybert", "close"))
    assert table["close"]["p_value"] == mcnemar(close, ref)[2]
    assert table["close"]["verdict"].startswith("not distinguishable") and not table["close"]["decisive"]


def test_paired_table_needs_the_seed_spread_too_for_a_decisive_row():
    results = _record()
    worse = {r["variant"]: r for r in paired_table(results)}["once worse"]
    assert worse["p_value"] < 0.05  # these two trained models differ on the dev sentences ...
    assert not worse["decisive"] and "no seed spread" in worse["verdict"]  # ... but one seed says nothing of retraining
    worse = {r["variant"]: r for r in paired_table(results, single_seed_sd=0.2)}["once worse"]
    assert not worse["decisive"] and "within 2 seed standard errors" in worse["verdict"]
    with pytest.raises(KeyError, match="no row"):
        paired_table(results, reference="missing")


def test_load_results_reads_the_per_sentence_record_beside_results_json(tmp_path, caplog):
    results = _record()
    per_sentence = results.pop("per_sentence")
    (tmp_path / "results.json").write_text(json.dumps(results))
    old = load_results(tmp_path / "results.json")  # a record written before per-sentence correctness was kept
    assert "per_sentence" not in old and old == results
    assert all(r["verdict"] == "not recorded" for r in paired_table(old))
    (tmp_path / "results_per_sentence.json").write_text(json.dumps(per_sentence))
    new = load_results(tmp_path / "results.json")
    assert new["per_sentence"] == per_sentence
    same = json.dumps(paired_table({**results, "per_sentence": per_sentence}))  # as JSON: nan == nan there
    assert json.dumps(paired_table(new)) == same
    # another run's per-sentence file (a different tinybert seed 43) is not used
    per_sentence["runs"][1]["correct"] = per_sentence["runs"][1]["correct"].replace("1", "0", 5)
    (tmp_path / "results_per_sentence.json").write_text(json.dumps(per_sentence))
    with caplog.at_level(logging.WARNING):
        stale = load_results(tmp_path / "results.json")
    assert "per_sentence" not in stale and "another run" in caplog.text
