"""Paired bootstrap differences: exact answers where the difference is constant, calibration where it is noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shapprune.evaluation.paired import accuracy_difference, ppl_ratio


def test_identical_variants_have_no_difference() -> None:
    rng = np.random.default_rng(0)
    nll = rng.gamma(5.0, 60.0, size=32)
    same = ppl_ratio(nll, nll.copy(), 127, 500, rng)
    assert (same.estimate, same.low, same.high) == (1.0, 1.0, 1.0) and not same.real
    hits = {"piqa": rng.integers(0, 2, 20), "boolq": rng.integers(0, 2, 20)}
    acc = accuracy_difference(hits, {t: h.copy() for t, h in hits.items()}, 500, rng)
    assert (acc.estimate, acc.low, acc.high) == (0.0, 0.0, 0.0) and not acc.real


def test_a_constant_shift_is_exact_and_real() -> None:
    """Every window 0.1 nats/token worse: the ratio is exp(0.1) in every resample."""
    rng = np.random.default_rng(1)
    b = rng.gamma(5.0, 60.0, size=16)
    got = ppl_ratio(b + 0.1 * 127, b, 127, 200, rng)
    assert got.estimate == pytest.approx(math.exp(0.1)) and got.real
    assert got.low == pytest.approx(math.exp(0.1)) and got.high == pytest.approx(math.exp(0.1))


def test_accuracy_difference_is_the_mean_over_tasks() -> None:
    """Task A: 3 of 4 items flip to right (+0.75), task B: none (0): mean +0.375, whatever the task sizes."""
    a = {"A": np.array([1, 1, 1, 0]), "B": np.array([1, 0, 1, 0, 1, 0, 1, 0])}
    b = {"A": np.array([0, 0, 0, 0]), "B": a["B"].copy()}
    got = accuracy_difference(a, b, 1000, np.random.default_rng(2))
    assert got.estimate == pytest.approx(0.375)
    assert 0.0 <= got.low < 0.375 < got.high <= 0.5


def test_noise_alone_is_called_real_about_five_percent_of_the_time() -> None:
    """Two variants whose windows differ by zero-mean noise: a 95 % interval excludes 1 in about 5 % of trials."""
    rng = np.random.default_rng(3)
    trials = 300
    real = 0
    for _ in range(trials):
        b = rng.gamma(5.0, 60.0, size=48)
        a = b + rng.normal(0.0, 10.0, size=48)
        real += ppl_ratio(a, b, 127, 400, rng).real
    assert 0.02 <= real / trials <= 0.10


def test_a_real_difference_inside_the_unpaired_noise_is_found() -> None:
    """Windows vary a lot (unpaired errors overlap) but A is worse on every one by a little: paired, it is real."""
    rng = np.random.default_rng(4)
    b = rng.gamma(2.0, 200.0, size=64)
    a = b * 1.02 + rng.normal(0.0, 1.0, size=64)
    got = ppl_ratio(a, b, 127, 1000, rng)
    assert got.real and got.low > 1.0
    spread = np.std(b / 127) / math.sqrt(64)  # the standard error of either log-PPL alone
    assert math.log(got.estimate) < 2 * spread  # separately, the two would look the same


def test_bad_inputs_name_the_fix() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="equal, non-empty"):
        ppl_ratio(np.ones(3), np.ones(4), 127, 10, rng)
    with pytest.raises(ValueError, match="same tasks"):
        accuracy_difference({"a": np.ones(2)}, {"b": np.ones(2)}, 10, rng)
    with pytest.raises(ValueError, match="score the same items"):
        accuracy_difference({"a": np.ones(2)}, {"a": np.ones(3)}, 10, rng)
    with pytest.raises(ValueError, match="level"):
        ppl_ratio(np.ones(3), np.ones(3), 127, 10, rng, level=1.5)


def test_normal_difference_is_the_mean_per_item_difference_with_its_standard_error() -> None:
    from shapprune.evaluation.paired import normal_difference

    d = normal_difference(np.array([0, 0, 1, 1]), np.array([1, 0, 1, 1]))  # differences 1, 0, 0, 0
    half = 1.959964 * 0.5 / 2  # sd 0.5 (ddof 1), n = 4
    assert d.estimate == 0.25 and d.low == pytest.approx(0.25 - half) and d.high == pytest.approx(0.25 + half)
    assert not d.real  # [-0.24, 0.74] holds 0
    same = normal_difference(np.array([1, 0, 1]), np.array([1, 0, 1]))
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="two equal lists"):
        normal_difference(np.array([1, 0]), np.array([1]))


def test_the_mean_of_task_differences_adds_their_errors_in_quadrature() -> None:
    from shapprune.evaluation.paired import PairedDiff, mean_of_differences

    z = 1.959964
    first, second = (
        PairedDiff(0.1, 0.1 - z * 0.03, 0.1 + z * 0.03, 0),
        PairedDiff(-0.3, -0.3 - z * 0.04, -0.3 + z * 0.04, 0),
    )
    m = mean_of_differences([first, second])
    assert m.estimate == pytest.approx(-0.1)
    assert (m.high - m.low) / (2 * z) == pytest.approx(math.sqrt(0.03**2 + 0.04**2) / 2, rel=1e-6)
