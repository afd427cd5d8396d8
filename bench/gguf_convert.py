"""GGUF files written from a transformers model (the path a hub or local source takes), against that model.

Takes the default model as ``prepare_model`` saved it (``data/model``, a ``save_pretrained`` folder: to the
converter it is any transformers source), drops ``--drop`` (SLEB's 6-layer block by default) and writes the
cut model as a GGUF in each of ``--types`` with :func:`shapprune.export.gguf_convert.convert_gguf`, as the
export stage does for a source that is no GGUF. Side by side in one run: file size, perplexity on
``--windows`` held-out windows as transformers reads each file, logits against the fp32 model, and with
``--llama-python`` llama.cpp's own logits and greedy text for each file against transformers' (the tokens
are given as ids: llama.cpp's tokenizer is not exercised). Writes ``bench/results/gguf_convert.{md,json}``.

    python -m bench.gguf_convert --llama-python /tmp/lcvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.gguf_export import PROMPT, agreement, llama_cpp
from shapprune.config import load_params
from shapprune.export.gguf_convert import convert_gguf
from shapprune.scoring import window_nll
from shapprune.surgery import keep_layers, num_layers
from tasks.shared.artifacts import read_windows
from tasks.shared.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", default="13,14,15,16,17,18", help="layers removed before converting")
    parser.add_argument("--types", default="F16,Q8_0,Q4_0")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows for the perplexities")
    parser.add_argument("--llama-python", default=None, help="a Python with llama-cpp-cffi installed")
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(2)
    paths = Paths(ROOT)
    params = load_params(paths.params)
    corpus = next(iter(params.prepare_data.eval_corpora))
    windows = read_windows(paths.eval_windows(corpus))[: args.windows]  # [n, T]
    model = AutoModelForCausalLM.from_pretrained(paths.model, dtype=torch.float32).eval()
    dropped = [int(x) for x in args.drop.split(",")] if args.drop else []
    keep = ~np.isin(np.arange(num_layers(model)), dropped)
    keep_layers(model, keep)
    tokenizer = AutoTokenizer.from_pretrained(paths.model)
    ids = torch.tensor(tokenizer(PROMPT).input_ids)[None]  # [1, T]
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        reference = model(ids).logits[0].numpy()  # [T, V]
    tied = model.config.tie_word_embeddings
    fp32_bytes = sum(v.nbytes for k, v in state.items() if k != "lm_head.weight" or not tied)
    result: dict = {"dropped": dropped, "windows": int(len(windows)), "corpus": corpus, "prompt": PROMPT}
    result["files"] = {"fp32 (in memory)": {"bytes": fp32_bytes, "ppl": math.exp(window_nll(model, windows).mean)}}
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in args.types.split(","):
            path = Path(tmp) / f"{qtype}.gguf"
            convert_gguf(state, model.config.to_dict(), paths.model, path, qtype)
            loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, dtype=torch.float32).eval()
            with torch.no_grad():
                logits = loaded(ids).logits[0].numpy()
            row = {"bytes": path.stat().st_size, "ppl": math.exp(window_nll(loaded, windows).mean)}
            row["transformers vs fp32"] = agreement(logits, reference)
            if args.llama_python:
                lc, greedy = llama_cpp(args.llama_python, path, ids[0].numpy(), args.new_tokens)
                with torch.no_grad():
                    tf = loaded.generate(ids, max_new_tokens=args.new_tokens, do_sample=False)[0, ids.shape[1] :]
                row["llama.cpp vs transformers"] = agreement(lc, logits) | {
                    "llama.cpp text": tokenizer.decode(greedy),
                    "transformers text": tokenizer.decode(tf),
                    "greedy tokens equal": int((greedy == tf.numpy()[: len(greedy)]).sum()),
                    "greedy tokens": len(greedy),
                }
            result["files"][f"{qtype} GGUF"] = row
            print(qtype, row["bytes"] / 2**20, row["ppl"], flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "gguf_convert.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "gguf_convert.md").write_text(report(result, args))
    print(report(result, args))


def report(r: dict, args: argparse.Namespace) -> str:
    command = "python -m bench.gguf_convert"
    command += " --llama-python <python with llama-cpp-cffi>" if args.llama_python else ""
    lines = [
        "# GGUF converted from a transformers model",
        "",
        f"`{command}` (written by it): the default model as a `save_pretrained` folder without layers "
        f"{', '.join(map(str, r['dropped']))}, written by the export stage's converter; "
        f"{r['windows']} held-out `{r['corpus']}` windows.",
        "",
        "| file | MiB | perplexity | max abs logit diff vs fp32 | top-1 agree |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, f in r["files"].items():
        a = f.get("transformers vs fp32")
        cells = f"{a['max_abs_diff']:.3f} | {a['top1_agree']:.2f}" if a else "- | -"
        lines.append(f"| {name} | {f['bytes'] / 2**20:.1f} | {f['ppl']:.2f} | {cells} |")
    lc = {n: f["llama.cpp vs transformers"] for n, f in r["files"].items() if "llama.cpp vs transformers" in f}
    if lc:
        lines += ["", "| file | llama.cpp vs transformers: max abs logit diff | top-1 agree | greedy tokens equal |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for name, a in lc.items():
            equal = f"{a['greedy tokens equal']} of {a['greedy tokens']}"
            lines.append(f"| {name} | {a['max_abs_diff']:.3f} | {a['top1_agree']:.2f} | {equal} |")
        for name, a in lc.items():
            lines += ["", f"**{name}**, greedy from {r['prompt']!r}:", f"- llama.cpp: {a['llama.cpp text']!r}",
                      f"- transformers: {a['transformers text']!r}"]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
