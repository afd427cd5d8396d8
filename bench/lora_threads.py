"""Are healed weights bitwise reproducible? The default repair at 1 and 2 torch threads, side by side in one run.

Each run is its own process: SLEB's 6-layer set of the default model (the block 13-18) cut from
``data/model``, refitted and healed with LoRA as ``repair.method: linear+lora`` does (``params.yaml``'s
recipe, ``--steps`` LoRA steps), merged. A machine with another core count runs torch's kernels with
another split of the work, which is what the thread count changes here. The table says whether the merged
weights are byte-identical and, where not, how far apart they are.

    python -m bench.lora_threads --steps 16        # after `dvc repro prepare_data` (data/model, repair windows)
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
DROPPED = [13, 14, 15, 16, 17, 18]  # SLEB's (and select's) 6-layer set on the default model


def child(threads: int, steps: int, out: Path) -> None:
    """One healing run at ``threads`` threads; writes the merged weights and the LoRA losses."""
    from safetensors.torch import save_file

    from bench.repair import linear_maps, repaired
    from shapprune.config import load_params
    from tasks.shared.paths import Paths

    torch.set_num_threads(threads)
    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"repair": params.repair.model_copy(update={"lora_steps": steps})})
    paths = Paths(ROOT)
    maps, _ = linear_maps(paths, params, [DROPPED], params.repair.fit)
    tag = out.stem  # a LoRA checkpoint folder of this run's own: no run resumes another's
    shutil.rmtree(OUT / "work" / f"lora-{'-'.join(map(str, DROPPED))}-linear+lora-{tag}", ignore_errors=True)
    model, _, info = repaired(paths, params, DROPPED, "linear+lora", torch.float32, maps, tag)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.pop("lm_head.weight", None)  # tied to the embedding
    save_file(state, str(out), metadata={"loss_first": repr(info["lora_loss_first"]),
                                         "loss_last": repr(info["lora_loss_last"])})  # fmt: skip


def digest(path: Path) -> str:
    """sha256 over every tensor's bytes, in name order (the file's header order may differ)."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--runs", default="1,2,2", help="threads of each run, in order")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.steps, args.out)
        return
    from safetensors import safe_open
    from safetensors.torch import load_file

    work = OUT / "work" / "lora_threads"
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, threads in enumerate(int(t) for t in args.runs.split(",")):
        path = work / f"run{i}-threads{threads}.safetensors"
        began = time.perf_counter()
        cmd = [sys.executable, "-m", "bench.lora_threads", "--child", str(threads), "--steps", str(args.steps),
               "--out", str(path)]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=True)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        runs.append((threads, path, time.perf_counter() - began, meta))
        print(f"run {i}: {threads} thread(s), {runs[-1][2]:.0f} s")
    ref_threads, ref_path, _, _ = runs[-1]
    ref = load_file(str(ref_path))
    lines = [
        "# Healed weights at 1 and 2 threads",
        "",
        f"`python -m bench.lora_threads --steps {args.steps} --runs {args.runs}`: the default repair "
        f"(`linear+lora`, refit, {args.steps} LoRA steps) of the block {DROPPED[0]}-{DROPPED[-1]} of the default "
        f"model, each run in its own process; compared with the last run ({ref_threads} threads).",
        "",
        "| run | threads | wall s | LoRA loss first -> last | sha256 of the merged weights | tensors that differ "
        "| max abs difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, (threads, path, seconds, meta) in enumerate(runs):
        got = load_file(str(path))
        differ = [k for k in ref if not torch.equal(ref[k], got[k])]
        worst = max((float((ref[k] - got[k]).abs().max()) for k in differ), default=0.0)
        lines.append(
            f"| {i} | {threads} | {seconds:.0f} | {float(meta['loss_first']):.6f} -> {float(meta['loss_last']):.6f} "
            f"| `{digest(path)[:16]}` | {len(differ)} of {len(ref)} | {worst:.3g} |"
        )
    scale = float(np.median([float(v.abs().max()) for v in ref.values()]))
    lines += ["", f"Median over tensors of max |w|: {scale:.3g}.", ""]
    (OUT / "lora_threads.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
