"""The shipped GGUF's quality against the type of the tensors the repair changed, side by side in one run.

Cuts the source GGUF of ``base.model`` to the repaired model's kept blocks (``data/repaired``, the repair
stage's output) once per ``--types`` entry (``export.gguf_changed``: ``source`` re-rounds every changed
tensor to the source's own type), reloads each file with transformers' GGUF loader and measures held-out
perplexity on the first ``--windows`` windows of every corpus, beside the fp32 repaired model (what
``evaluate@repaired`` measured) and the pruned, unrepaired one (``data/pruned``). Writes
``bench/results/<out>.{md,json}``.

    python -m bench.gguf_changed                      # after make repro (or flows.prune + flows.repair)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from shapprune.config import load_params
from shapprune.export.gguf import attention_heads, export_gguf
from shapprune.model_source import resolve_source
from shapprune.models import one_gguf_parse
from shapprune.scoring import window_nll
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def held_out_ppl(model, windows: dict[str, np.ndarray]) -> dict[str, float]:
    """Perplexity per corpus of ``model`` (fp32) on ``windows`` (corpus -> int64 [n, T])."""
    return {corpus: math.exp(window_nll(model.eval(), ids).mean) for corpus, ids in windows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="source,Q8_0,F16", help="export.gguf_changed values to compare")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows per corpus")
    parser.add_argument("--out", default="gguf_changed")
    args = parser.parse_args()
    torch.set_num_threads(2)

    paths = Paths(ROOT)
    params = load_params(paths.params)
    src = resolve_source(params.base.model)
    if src.gguf_file is None:
        raise SystemExit(f"bench.gguf_changed: base.model '{params.base.model}' is no GGUF; nothing to cut")
    source = Path(src.location) / src.gguf_file
    pruning = json.loads((paths.pruned / "pruning.json").read_text())
    kept = [int(i) for i in pruning["kept_layers"]]
    method = json.loads((paths.repaired / "repair.json").read_text())["method"]
    windows = {c: read_windows(paths.eval_windows(c))[: args.windows] for c in params.prepare_data.eval_corpora}

    repaired = AutoModelForCausalLM.from_pretrained(paths.repaired, dtype=torch.float32)
    heads = attention_heads(repaired.config)
    state = {k: v.detach().float().numpy() for k, v in repaired.state_dict().items()}
    rows = [{"model": f"fp32 repaired ({method}; what evaluate measured)", "mib": None, "written": None}]
    rows[0]["ppl"] = held_out_ppl(repaired, windows)
    del repaired
    pruned = AutoModelForCausalLM.from_pretrained(paths.pruned, dtype=torch.float32)
    unrepaired = held_out_ppl(pruned, windows)
    rows.append({"model": "fp32 pruned, unrepaired", "mib": None, "written": None, "ppl": unrepaired})
    del pruned
    with tempfile.TemporaryDirectory() as tmp:
        for changed in args.types.split(","):
            began = time.perf_counter()
            out = export_gguf(source, Path(tmp) / changed / "model.gguf", kept, state, heads, changed_type=changed)
            seconds = time.perf_counter() - began
            with one_gguf_parse():
                model = AutoModelForCausalLM.from_pretrained(out.path.parent, gguf_file=out.path.name,
                                                             dtype=torch.float32)  # fmt: skip
            types = sorted(set(out.requantised.values()))
            rows.append({
                "model": f"GGUF, changed tensors: {changed}", "mib": out.path.stat().st_size / 2**20,
                "written": f"{len(out.requantised)} in {'/'.join(types) or '-'}, {len(out.copied)} copied",
                "write_s": seconds, "ppl": held_out_ppl(model, windows),
            })  # fmt: skip
            del model
    ref = rows[0]["ppl"]
    corpora = list(windows)
    lines = [
        "# The shipped GGUF against the type of the tensors the repair changed",
        "",
        f"`python -m bench.gguf_changed --types {args.types} --windows {args.windows} --out {args.out}`: "
        f"the source `{source.name}` cut to the repaired model's {len(kept)} kept blocks (`data/repaired`, repair "
        f"`{method}`), one file per type, reloaded by transformers (dequantised); held-out PPL on the first "
        f"{args.windows} windows of each corpus, all rows side by side in one run.",
        "",
        "| model | MiB | tensors written anew | " + " | ".join(f"PPL {c}" for c in corpora)
        + " | vs fp32 repaired |",
        "|---|---:|---|" + "---:|" * len(corpora) + "---|",
    ]  # fmt: skip
    for row in rows:
        mib = "–" if row["mib"] is None else f"{row['mib']:.1f}"
        ratio = " / ".join(f"{row['ppl'][c] / ref[c]:.3f}x" for c in corpora)
        cells = " | ".join(f"{row['ppl'][c]:.2f}" for c in corpora)
        lines.append(f"| {row['model']} | {mib} | {row['written'] or '–'} | {cells} | {ratio} |")
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    (OUT / f"{args.out}.json").write_text(json.dumps({"kept": kept, "method": method, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
