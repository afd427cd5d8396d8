import numpy as np

from shapprune.estimators.fidelity import fidelity_report


def test_report_by_stratum_and_outside_the_training_strata():
    true = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.9])
    pred = true + np.array([0.0, 0.0, 0.0, 0.1, 0.1, -0.1])
    kept = np.array([1, 1, 1, 2, 2, 3])
    report = fidelity_report(pred, true, kept, train_strata=[1])
    assert report["overall"]["n"] == 6 and report["overall"]["r2"] < 1.0
    rows = {row["n_kept"]: row for row in report["by_stratum"]}
    assert rows[1]["rmse"] == 0.0 and np.isclose(rows[2]["bias"], 0.1) and rows[3]["n"] == 1
    assert report["inside_strata"]["rmse"] == 0.0 and report["inside_strata"]["n"] == 3
    assert np.isclose(report["outside_strata"]["rmse"], 0.1) and report["outside_strata"]["n"] == 3
