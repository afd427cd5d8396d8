import numpy as np

from shapprune.surrogate import MLPSurrogate, SurrogateSpec, TrainSpec, fidelity, fit_mlp


def _data(n: int, L: int, seed: int):
    rng = np.random.default_rng(seed)
    masks = rng.random((n, L)) < 0.7
    w = np.linspace(0.02, 0.12, L)
    y = 1 / (1 + np.exp(-(masks @ w * 4 - 2.0)))  # a known smooth function of the mask
    return masks, y


def test_surrogate_fits_a_known_function_on_held_out_masks():
    masks, y = _data(600, 12, 0)
    model, history = fit_mlp(
        masks[:500],
        y[:500],
        SurrogateSpec(12),
        TrainSpec("adam", lr=0.01, epochs=150, batch_size=64, step_size=100, gamma=0.5),
        seed=0,
    )
    fid = fidelity(model.predict(masks[500:]), y[500:])
    assert fid["r2"] > 0.95 and fid["spearman"] > 0.95
    assert history[-1] < history[0]


def test_paper_recipe_runs_and_is_deterministic():
    masks, y = _data(200, 8, 1)
    a, _ = fit_mlp(masks, y, SurrogateSpec(8), TrainSpec(epochs=5), seed=3)
    b, _ = fit_mlp(masks, y, SurrogateSpec(8), TrainSpec(epochs=5), seed=3)
    np.testing.assert_array_equal(a.predict(masks), b.predict(masks))
    assert [type(m).__name__ for m in a.net] == ["Linear", "CELU", "Linear", "Sigmoid"]
    assert a.net[0].out_features == 16  # L -> 2L -> 1


def test_save_load_roundtrip(tmp_path):
    masks, y = _data(100, 6, 2)
    model, _ = fit_mlp(masks, y, SurrogateSpec(6, depth=2, output="linear"), TrainSpec(epochs=3), seed=0)
    model.save(tmp_path, {"model": "x"})
    loaded = MLPSurrogate.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(masks), model.predict(masks))
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_predict_rejects_masks_of_another_width():
    model = MLPSurrogate(SurrogateSpec(6))
    try:
        model.predict(np.ones((2, 7), bool))
    except ValueError as err:
        assert "refit the surrogate" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_fidelity_perfect_and_constant():
    y = np.array([0.1, 0.4, 0.3, 0.9])
    assert fidelity(y, y)["r2"] == 1.0
    assert fidelity(np.full(4, y.mean()), y)["r2"] == 0.0
