import numpy as np
import pytest

from shapprune.prefix import PrefixScorer, lexicographic_order, score_with_prefix_reuse
from shapprune.sampling import stratified_masks
from shapprune.scoring import masked_nll, window_nll


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


@pytest.mark.parametrize("cache_mib", [512.0, 0.00005], ids=["cache", "tiny-cache"])
def test_pinned_full_model_states_are_bit_identical(tiny_model, ids, masks, cache_mib):
    """Every mask may start from the pinned full model's states, across the rolling cache, with the same NLL."""
    windows = ids.numpy()
    scorer = PrefixScorer(tiny_model, windows, batch_size=2, cache_mib=cache_mib)
    full = scorer.pin()
    assert full == window_nll(tiny_model, windows, batch_size=2)
    got = [scorer.score(m) for m in masks[::-1]]  # reverse trie order: the rolling cache helps least
    assert [g.total for g in got] == [masked_nll(tiny_model, windows, m, batch_size=2).total for m in masks[::-1]]
    if cache_mib == 512.0:  # layers before the first dropped one (and before the last kept one) never run
        first = [min(int(np.argmin(m)) if not m.all() else len(m), int(np.flatnonzero(m)[-1])) for m in masks]
        assert scorer.stats.run_layers <= int(masks.sum()) - sum(first)


def test_signature_keeps_masks_with_other_weights_apart(tiny_model, ids):
    """Equal masks with different signatures share no state past the first difference."""
    windows = ids.numpy()
    scorer = PrefixScorer(tiny_model, windows, batch_size=2)
    mask = np.array([1, 1, 1, 1, 0, 1], bool)
    scorer.score(mask)
    before = scorer.stats.run_layers
    scorer.score(mask, signature=np.array([1, 7, 1, 1, 0, 1]))
    assert scorer.stats.run_layers - before == 4  # layer 0 reused; layers 1, 2, 3 and 5 run again
    with pytest.raises(ValueError, match="signature of shape"):
        scorer.score(mask, signature=np.ones(3))
