import numpy as np
import pytest

from shapprune.prefix import lexicographic_order, score_with_prefix_reuse
from shapprune.sampling import stratified_masks
from shapprune.scoring import masked_nll


@pytest.fixture(scope="module")
def masks():
    return stratified_masks(6, [5, 4, 3, 1], [6, 8, 8, 3], np.random.default_rng(0))


def test_lexicographic_order_walks_the_trie_kept_first():
    m = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 0, 0]], bool)
    assert m[lexicographic_order(m)].astype(int).tolist() == [[1, 1, 0], [1, 0, 1], [1, 0, 0], [0, 1, 1]]


@pytest.mark.slow  # several seconds: the full tier runs it
@pytest.mark.parametrize("cache_mib", [512.0, 0.0, 0.00005], ids=["cache", "no-cache", "tiny-cache"])
def test_prefix_reuse_is_bit_identical_to_skipping(tiny_model, ids, masks, cache_mib):
    windows = ids.numpy()
    expected = [masked_nll(tiny_model, windows, m, batch_size=2) for m in masks]
    got, stats = score_with_prefix_reuse(tiny_model, windows, masks, batch_size=2, cache_mib=cache_mib)
    assert [g.total for g in got] == [e.total for e in expected]
    assert [g.tokens for g in got] == [e.tokens for e in expected]
    assert stats.full_layers == int(masks.sum())
    if cache_mib == 0.0:
        assert stats.run_layers == stats.full_layers and stats.cache_hits == 0
    if cache_mib == 512.0:
        assert 0.2 < stats.saved_fraction < 1.0


def test_progress_reports_every_mask_once(tiny_model, ids, masks):
    seen = []
    score_with_prefix_reuse(tiny_model, ids.numpy(), masks, progress=lambda row, nll, done: seen.append(row))
    assert sorted(seen) == list(range(len(masks)))
