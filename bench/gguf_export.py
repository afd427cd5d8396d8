"""The exported GGUF against the model it came from, read by transformers and by llama.cpp itself.

Reads the ``export`` stage's output (``data/export/model.gguf``, ``data/repaired``) and the source GGUF of
``base.model``. On ``--windows`` held-out windows (compare's first corpus) it measures, side by side in one
run: the perplexity of the fp32 model the pipeline evaluated, of the exported GGUF as transformers
dequantises it, and of the source GGUF (the full model); the logits transformers gets from the exported
file against the fp32 model's; and, with ``--llama-python`` (a Python with ``llama-cpp-cffi``, see
``bench/llama_cpp_logits.py``), llama.cpp's own logits and greedy text for the source and exported files
against transformers' for the same file. Writes ``bench/results/gguf_export.{md,json}``.

    python -m bench.gguf_export --llama-python /tmp/lcvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from shapprune.config import load_params
from shapprune.model_source import resolve_source
from shapprune.scoring import window_nll
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
PROMPT = "The capital of France is"


def llama_cpp(python: str, gguf: Path, ids: np.ndarray, n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's logits float32[T, V] for ``ids`` and its greedy continuation (``n_new`` tokens)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/ids.npy", ids.astype(np.int32))
        script = Path(__file__).parent / "llama_cpp_logits.py"
        cmd = [python, "-P", str(script), str(gguf), f"{tmp}/ids.npy", f"{tmp}/out.npy", str(n_new)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return np.load(f"{tmp}/out.npy"), np.load(f"{tmp}/out.npy.greedy.npy")


LOADERS = {
    "HF folder (AutoModelForCausalLM)": "from transformers import AutoModelForCausalLM as A; "
    "A.from_pretrained({folder!r})",
    "MLflow registry (mlflow.transformers)": "import mlflow; mlflow.set_tracking_uri({store!r}); "
    "mlflow.transformers.load_model({uri!r}, return_type='components')",
    "GGUF file (transformers)": "from transformers import AutoModelForCausalLM as A; "
    "A.from_pretrained({gguf_dir!r}, gguf_file='model.gguf')",
}


def load_seconds(paths: Paths, uri: str | None, repeats: int) -> dict[str, float]:
    """Seconds to load the exported model in a fresh process, per way of loading it (best of ``repeats``)."""
    import os
    import sys
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    store = f"sqlite:///{paths.root / 'mlflow.db'}"
    out = {}
    for name, code in LOADERS.items():
        if "registry" in name and uri is None:
            continue
        stmt = code.format(folder=str(paths.export / "model"), store=store, uri=uri, gguf_dir=str(paths.export))
        timing = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", timing], check=True, capture_output=True, env=env)
            best = min(best, time.perf_counter() - start)
        out[name] = best
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How close two logit arrays [T, V] are: largest difference, its scale, top-1 agreement."""
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "logit_scale": float(np.abs(b).max()),
        "top1_agree": float((a.argmax(-1) == b.argmax(-1)).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT))
    parser.add_argument("--windows", type=int, default=16, help="held-out windows for the perplexities")
    parser.add_argument("--llama-python", default=None, help="a Python with llama-cpp-cffi installed")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--load-repeats", type=int, default=3, help="fresh-process loads per way (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(2)

    paths = Paths(Path(args.root).resolve())
    params = load_params(paths.params)
    src = resolve_source(params.base.model)
    source = Path(src.location) / src.gguf_file
    exported = paths.export / "model.gguf"
    corpus = next(iter(params.prepare_data.eval_corpora))
    windows = read_windows(paths.eval_windows(corpus))[: args.windows]  # [n, T]

    def gguf_model(path: Path):
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()

    models = {
        "fp32 (what evaluate measured)": AutoModelForCausalLM.from_pretrained(paths.repaired, dtype=torch.float32),
        "exported GGUF (transformers)": gguf_model(exported),
        "source GGUF, full model": gguf_model(source),
    }
    tokenizer = AutoTokenizer.from_pretrained(paths.repaired)
    ids = torch.tensor(tokenizer(PROMPT).input_ids)[None]  # [1, T]
    result: dict = {"windows": int(len(windows)), "corpus": corpus, "prompt": PROMPT, "ppl": {}, "bytes": {}}
    logits = {}
    for name, model in models.items():
        result["ppl"][name] = math.exp(window_nll(model.eval(), windows).mean)
        with torch.no_grad():
            logits[name] = model(ids).logits[0].numpy()
    result["bytes"] = {"source GGUF": source.stat().st_size, "exported GGUF": exported.stat().st_size}
    for f in ("model", "repaired"):
        folder = paths.export / "model" if f == "model" else paths.repaired
        result["bytes"][f"HF {'bf16 export' if f == 'model' else 'fp32 data/repaired'}"] = sum(
            p.stat().st_size for p in folder.glob("*.safetensors")
        )
    fp32, gguf_tf = logits["fp32 (what evaluate measured)"], logits["exported GGUF (transformers)"]
    result["transformers: exported GGUF vs fp32"] = agreement(gguf_tf, fp32)
    export_info = json.loads(paths.metrics_file("export").read_text())
    result["requantised"] = (export_info.get("gguf") or {}).get("requantised")
    registered = export_info.get("registered") or {}
    result["load_seconds"] = load_seconds(paths, registered.get("uri"), args.load_repeats)

    if args.llama_python:
        for name, path, reference in (
            ("source", source, logits["source GGUF, full model"]),
            ("exported", exported, gguf_tf),
        ):
            lc, greedy = llama_cpp(args.llama_python, path, ids[0].numpy(), args.new_tokens)
            model = models["exported GGUF (transformers)" if name == "exported" else "source GGUF, full model"]
            with torch.no_grad():
                tf_greedy = model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False)[0, ids.shape[1] :]
            result[f"llama.cpp vs transformers, {name} GGUF"] = agreement(lc, reference) | {
                "llama.cpp text": tokenizer.decode(greedy),
                "transformers text": tokenizer.decode(tf_greedy),
                "greedy tokens equal": int((greedy == tf_greedy.numpy()[: len(greedy)]).sum()),
                "greedy tokens": len(greedy),
            }
    OUT.mkdir(exist_ok=True)
    (OUT / "gguf_export.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "gguf_export.md").write_text(report(result))
    print(report(result))


def report(r: dict) -> str:
    lines = [
        "# The exported GGUF, read by transformers and by llama.cpp",
        "",
        "`python -m bench.gguf_export --llama-python <python with llama-cpp-cffi>` (written by it; "
        f"{r['windows']} held-out `{r['corpus']}` windows).",
        "",
        "| model | perplexity |",
        "|---|---:|",
        *[f"| {name} | {ppl:.2f} |" for name, ppl in r["ppl"].items()],
        "",
        "| file | MiB |",
        "|---|---:|",
        *[f"| {name} | {size / 2**20:.1f} |" for name, size in r["bytes"].items()],
        "",
        f"Tensors quantised again (the repair changed them): {r['requantised'] or 'none'}.",
        "",
    ]
    loads = r.get("load_seconds") or {}
    if loads:
        fastest = min(loads.values())
        lines += ["| loaded in a fresh process (imports included) | time / fastest |", "|---|---:|"]
        lines += [f"| {name} | {sec / fastest:.2f}x |" for name, sec in loads.items()]
        lines += [""]
    lines += ["| comparison | max abs logit diff | logit scale | top-1 agree |", "|---|---:|---:|---:|"]
    keys = [k for k in r if " vs " in k]
    for k in keys:
        a = r[k]
        lines.append(f"| {k} | {a['max_abs_diff']:.3f} | {a['logit_scale']:.1f} | {a['top1_agree']:.2f} |")
    for k in keys:
        if "llama.cpp text" in r[k]:
            a = r[k]
            lines += [
                "",
                f"**{k}**, greedy from {r['prompt']!r}: "
                f"{a['greedy tokens equal']} of {a['greedy tokens']} tokens equal",
                f"- llama.cpp: {a['llama.cpp text']!r}",
                f"- transformers: {a['transformers text']!r}",
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
