import math

import numpy as np
import pytest

from shapprune.estimators.design import allocate, make_strata, sample_units, shapley_weights, unit_masks
from shapprune.estimators.readout import stratum_sums
from shapprune.shapley import all_masks, shapley_from_table
from tests.estimators.games import pairwise


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("n", [5, 6])
def test_strata_cover_every_coalition_once(n, paired):
    strata = make_strata(n, paired)
    seen = np.concatenate(
        [unit_masks(sample_units(n, st, st.population, np.random.default_rng(0)), st) for st in strata]
    )
    assert len(seen) == 2**n
    assert len({row.tobytes() for row in seen}) == 2**n


@pytest.mark.parametrize("paired", [False, True])
def test_stratum_sums_add_up_to_the_shapley_values(paired):
    game = pairwise(7, 0)
    sums, var = stratum_sums(game, make_strata(7, paired), 7, np.random.default_rng(0))
    np.testing.assert_allclose(sums.sum(axis=0), game.shapley(), atol=1e-12)
    assert not var.any()


def test_shapley_weights_identity():
    # phi_i = sum_S v(S) g_i(S) / C(L, |S|)
    game = pairwise(5, 1)
    masks = all_masks(5)
    coef = 1.0 / np.array([math.comb(5, int(s)) for s in masks.sum(axis=1)])
    phi = (coef * game(masks)) @ shapley_weights(masks)
    np.testing.assert_allclose(phi, shapley_from_table(game(masks), 5), atol=1e-12)


def test_sample_units_are_distinct_uniform_and_canonical():
    st = make_strata(6, True)[3]  # middle stratum: {S, complement}, |S| = 3
    rng = np.random.default_rng(0)
    leads = sample_units(6, st, 10, rng)
    assert len({m.tobytes() for m in leads}) == 10 and leads[:, 0].all()
    counts = np.zeros(6)
    for _ in range(300):
        counts += sample_units(6, make_strata(6, False)[2], 3, rng).sum(axis=0)
    np.testing.assert_allclose(counts / counts.sum(), 1 / 6, atol=0.03)


def test_allocate_respects_budget_caps_and_floor():
    n = allocate(np.array([1.0, 4.0, 1.0]), np.array([1.0, 2.0, 1.0]), np.array([5, 100, 2]), np.array([1, 1, 1]), 40)
    assert np.all(n >= 1) and n[2] <= 2 and n @ np.array([1, 2, 1]) <= 40
    assert n[1] > n[0]
    with pytest.raises(ValueError, match="budget"):
        allocate(np.ones(3), np.ones(3), np.full(3, 9), np.full(3, 4), 10)


def test_sampled_stratum_sums_beyond_sixteen_players_are_unbiased():
    game = pairwise(18, 3, scale=0.05)
    sums, var = stratum_sums(game, make_strata(18, True), 18, np.random.default_rng(0), n_samples=400)
    z = (sums.sum(axis=0) - game.shapley()) / np.sqrt(var.sum(axis=0))
    assert np.all(np.abs(z) < 4), z
