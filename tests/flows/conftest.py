"""A tiny project workspace (params + tiny model) for running the stages end to end, and the tiny pipeline
run once per test session (``tiny_pipeline``) for the tests that only read its artifacts or start from a copy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import tiny_llama

ROOT = Path(__file__).resolve().parents[2]
NOT_COPIED = (".locks", "mlflow.db", "mlartifacts", "*.log")  # the shared run's own locks, tracking and logs


def tiny_params(model_dir: Path) -> dict:
    """The default params.yaml shrunk to seconds: 6 layers, 18 masks, a handful of windows and items."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(model=str(model_dir), dtype="float32", device="cpu", threads=1)
    params["prepare_data"].update(seq_len=32, calibration_windows=4, validation_windows=2, eval_windows=3)
    params["prepare_data"].update(repair_windows=8)
    # three held-out corpora (one out of domain) keep the stage tests quick; the other kinds load in tests/test_data.py
    params["prepare_data"]["eval_corpora"] = {"wiki": "wiki_extracts", "news": "lee_news", "web": "enwiki_dump"}
    params["repair"].update(method="linear", lora_steps=4, lora_batch_size=2, checkpoint_every=2)
    params["sample_masks"].update(strata=[5, 4, 3], n_masks=18)
    # the scoring rounds and the surrogate-verified select (options; the default's budgeted select has its own tests)
    params["score_masks"].update(stop="decision", round_size=6)  # rounds of 2 masks per stratum, then a proposal
    params["fit_surrogate"].update(epochs=20, batch_size=8)
    params["estimate_shapley"].update(n_samples=600)
    params["select"].update(strategy="surrogate", budget=16, rounds=2)
    params["prune"].update(n_drop=2, ratio=None)
    params["evaluate"].update(tasks=["piqa", "winogrande"], n_items=4, batch_size=8)
    methods = ["select", "shapley", "block_influence", "sleb", "random"]
    params["compare"].update(methods=methods, ratios=[0.34], n_items=4, repairs=["none", "linear"])
    params["export"].update(base_model="tiny/tiny-llama", check_windows=2)
    return params


def update_params(root: Path, section: str, **values: Any) -> None:
    """Set ``section.key: value`` in ``root/params.yaml``."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.setdefault(section, {}).update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(out)
    smol_tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def workspace(tmp_path, tiny_model_dir) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model_dir), sort_keys=False))
    return tmp_path


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """One temporary Prefect server for every stage test of the run; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@dataclass(frozen=True)
class TinyRun:
    """Every stage of the tiny pipeline, run once in ``root``: read it, never write to it (copy it first)."""

    root: Path
    results: dict[str, dict]  # each stage's return value, by dvc stage name ("evaluate@full", ...)

    @property
    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def copy(self, dest: Path, *paths: str) -> Path:
        """``params.yaml`` and the artifacts at ``paths`` (relative to the root; all of them when none) into
        ``dest``, the starting point of a test that changes params or files; returns ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.root / "params.yaml", dest / "params.yaml")
        names = paths or [p.name for p in self.root.iterdir() if p.name != "params.yaml"]
        for rel in names:
            src = self.root / rel
            if not src.exists():
                raise FileNotFoundError(f"the shared tiny run has no {rel}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns(*NOT_COPIED), dirs_exist_ok=True)
            elif not any(src.match(p) for p in NOT_COPIED):
                shutil.copy2(src, target)
        return dest


def _fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file of a run but its MLflow store (which reading it may touch)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).parts[0].startswith(("mlflow.db", "mlartifacts"))
    }


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory, tiny_model_dir, prefect_api) -> Iterator[TinyRun]:
    """The whole tiny pipeline run once per test session, in-process, tracked in MLflow (``mlflow.db`` at
    its root, one pipeline id): the tests that only read artifacts share it, the others copy it first.
    Fails at the end of the session if a test wrote into it."""
    from flows.compare import compare
    from flows.estimate_shapley import estimate_shapley
    from flows.evaluate import evaluate
    from flows.export import export
    from flows.fit_surrogate import fit_surrogate
    from flows.prepare_data import prepare_data
    from flows.prepare_model import prepare_model
    from flows.prune import prune
    from flows.repair import repair
    from flows.report import report
    from flows.sample_masks import sample_masks
    from flows.score_layers import score_layers
    from flows.score_masks import score_masks
    from flows.select import select

    root = tmp_path_factory.mktemp("tiny-pipeline")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model_dir), sort_keys=False))
    stages = [
        ("prepare_model", prepare_model),
        ("prepare_data", prepare_data),
        ("sample_masks", sample_masks),
        ("score_masks", score_masks),
        ("fit_surrogate", fit_surrogate),
        ("estimate_shapley", estimate_shapley),
        ("select", select),
        ("score_layers", score_layers),
        ("prune", prune),
        ("repair", repair),
        *((f"evaluate@{which}", lambda root, which=which: evaluate(which=which, root=root))
          for which in ("full", "pruned", "repaired")),
        ("compare", compare),
        ("report", report),
        ("export", export),
    ]  # fmt: skip
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("SHAPPRUNE_PIPELINE_ID", "test-pipeline")
        mp.delenv("SHAPPRUNE_TRACKING", raising=False)
        for name, stage in stages:
            results[name] = stage(root=str(root))
    before = _fingerprint(root)
    yield TinyRun(root, results)
    changed = sorted(set(before.items()) ^ set(_fingerprint(root).items()))
    assert not changed, f"a test wrote into the shared tiny run (copy it first): {sorted({p for p, _ in changed})}"
