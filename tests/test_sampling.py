import math

import numpy as np
import pytest

from shapprune.sampling import PAPER_KEEP_FRACTIONS, split_counts, strata_from_fractions, stratified_masks


def test_paper_strata_scale_to_32_layers_exactly():
    assert strata_from_fractions(32, PAPER_KEEP_FRACTIONS) == [30, 27, 24, 21, 18]


def test_strata_for_30_layers_and_clipping():
    assert strata_from_fractions(30, PAPER_KEEP_FRACTIONS) == [28, 25, 23, 20, 17]
    assert strata_from_fractions(4, [0.01, 1.0]) == [1, 3]


def test_split_counts_equal_share_remainder_first():
    assert split_counts(10, 3) == [4, 3, 3]
    assert sum(split_counts(501, 5)) == 501


def test_stratified_masks_counts_and_kept_layers():
    rng = np.random.default_rng(0)
    masks = stratified_masks(30, [28, 25, 23], [7, 5, 3], rng)
    assert masks.shape == (15, 30) and masks.dtype == bool
    assert masks.sum(axis=1).tolist() == [28] * 7 + [25] * 5 + [23] * 3


def test_unique_masks_never_repeat_and_exhaust_a_stratum():
    rng = np.random.default_rng(1)
    masks = stratified_masks(6, [5], [6], rng)  # C(6,5) = 6: every mask exactly once
    assert len({m.tobytes() for m in masks}) == 6
    with pytest.raises(ValueError, match="only 6 exist"):
        stratified_masks(6, [5], [7], rng)


def test_same_seed_same_masks():
    a = stratified_masks(12, [10, 8], [5, 5], np.random.default_rng(7))
    b = stratified_masks(12, [10, 8], [5, 5], np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_masks_are_uniform_over_layers():
    masks = stratified_masks(10, [5], [4000], np.random.default_rng(3), unique=False)
    freq = masks.mean(axis=0)
    assert np.all(np.abs(freq - 0.5) < 4 * math.sqrt(0.25 / 4000))


def test_bad_stratum_names_the_key():
    with pytest.raises(ValueError, match="sample_masks.strata"):
        stratified_masks(5, [6], [1], np.random.default_rng(0))
