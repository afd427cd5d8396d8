"""Angular distance (Gromov et al.): shapes, symmetry, determinism and a block of identity layers found."""

from __future__ import annotations

import numpy as np
import pytest

from shapprune.baselines import layer_scores
from shapprune.baselines.angular import best_block, block_distances, select
from shapprune.baselines.hidden import mean_cosines
from tests.baselines.conftest import make_identity
from tests.conftest import tiny_llama


def test_distance_matrix_shape_symmetry_and_determinism(tiny_model, windows):
    cos, ang = mean_cosines(tiny_model, windows, batch_size=2)
    assert cos.shape == ang.shape == (7, 7)
    np.testing.assert_allclose(ang, ang.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(ang), 0, atol=2e-3)  # arccos(1 - eps) is ~sqrt(eps)
    assert np.all((ang >= 0) & (ang <= 1))
    np.testing.assert_allclose(mean_cosines(tiny_model, windows, batch_size=3)[1], ang, atol=1e-5)


def test_best_block_on_a_known_matrix():
    angles = np.full((6, 6), 0.5)  # L = 5
    angles[1, 4] = 0.1  # dropping layers 1..3 keeps h_1 ~ h_4
    assert best_block(angles, 3) == [1, 2, 3]
    assert block_distances(angles, 3).shape == (3,)
    with pytest.raises(ValueError, match="cannot drop 5 of 5"):
        best_block(angles, 5)


def test_finds_a_block_of_identity_layers(windows):
    model = make_identity(tiny_llama(seed=1), [3, 4])
    assert select(model, windows, 2) == [3, 4]
    result = layer_scores("angular", model, windows, [1, 2])
    assert result.set_valued and result.drop(2) == [3, 4] and result.drop(1) in ([3], [4])
    with pytest.raises(ValueError, match="no layer set computed for n_drop=3"):
        result.drop(3)
