"""Ranking and already-scored proposals, and the candidate record."""

from __future__ import annotations

import math

import numpy as np

from shapprune.estimators.budget import mask_key
from shapprune.select import Candidate, best_scored, ranking_mask


def test_ranking_drops_the_lowest_with_ties_by_index():
    mask = ranking_mask(np.array([0.5, 0.1, 0.3, 0.1, 0.9]), 5, 2)
    assert mask.tolist() == [[True, False, True, False, True]]


def test_best_scored_keeps_the_size_skips_nonfinite_and_excluded():
    masks = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=bool)
    values = np.array([0.5, 0.9, math.nan, 0.99, 0.7])
    got, vals = best_scored(masks, values, 2, 5, exclude={mask_key(masks[1])})
    assert got.tolist() == masks[[4, 0]].tolist() and vals.tolist() == [0.7, 0.5]
    assert best_scored(masks, values, 3, 5, set())[0].shape == (0, 4)


def test_candidate_record():
    c = Candidate(np.array([True, False, True, False]), ["beam"], 0.8, 1, calibration=0.75)
    row = c.record()
    assert row["n_drop"] == 2 and row["dropped"] == [1, 3] and row["bits"] == "1010"
    assert row["sources"] == "beam" and row["calibration"] == 0.75 and math.isnan(row["validation"])
    assert row["verified"] is False
