"""The ``select`` params section: defaults, prune's k, and one-line errors that name the fix."""

from __future__ import annotations

import pytest

from shapprune.config import ConfigError, parse_params
from tests.conftest import project_params


def test_default_searches_prunes_k_and_select_is_the_default_method():
    from tests.test_config import DEFAULT

    params = parse_params(DEFAULT)
    assert params.prune.method == "select"
    assert params.select.resolve_n_drops(30, params.prune.resolve_n_drop(30)) == [6]


def test_explicit_n_drops_are_sorted_and_checked():
    params = project_params({"select": {"n_drops": [9, 3, 6, 3]}})
    assert params.select.resolve_n_drops(30, 6) == [3, 6, 9]
    too_many = project_params({"select": {"n_drops": [30]}}).select
    with pytest.raises(ConfigError, match="select.n_drops: 30 layers cannot be dropped from a 30-layer model"):
        too_many.resolve_n_drops(30, 6)


@pytest.mark.parametrize(
    ("values", "key"),
    [({"n_drops": []}, "select.n_drops"), ({"budget": 0}, "select.budget"), ({"surrogate": "svm"}, "select.surrogate")],
)
def test_bad_values_name_the_key(values, key):
    with pytest.raises(ConfigError) as err:
        project_params({"select": values})
    lines = str(err.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"params.yaml: {key}")
