"""Stage ``export``: the model a user ships, from the repaired weights (``repair.method: none`` is the pruned model).

Writes ``data/export/model/`` (a ``save_pretrained`` folder in ``export.dtype`` with tokenizer, generation
config and a model card ``README.md``), ``data/export/model.gguf`` (``export.gguf``: the source GGUF cut to
the kept blocks, its quantisation kept) and ``data/metrics/export.json`` (sizes, and each file reloaded as a
user would, checked against the fp32 model on ``export.check_windows`` validation windows). In MLflow the
folder becomes a ``transformers``-flavour model registered as a new version of ``export.registered_name``,
unless it is over ``export.mlflow_max_mb`` (then only a reference to the DVC-tracked copy is logged).
"""

from __future__ import annotations

import shutil

import torch
from prefect import flow

from shapprune.models import load_model, parameter_count
from tasks.export import (
    GGUF_NAME,
    card_facts,
    check_roundtrip,
    gguf_source,
    register_export,
    save_shippable,
    write_card,
    write_gguf,
)
from tasks.shared.artifacts import read_windows
from tasks.shared.contracts import kept_mask, write_json
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import directory_mb, git_commit, log_model_dir


@flow(name="export", log_prints=True)
def export(root: str = ".") -> dict:
    stage = Stage.open("export", root)
    paths, cfg = stage.paths, stage.params.export
    keep = kept_mask(paths.pruned)
    kept, dropped = [int(i) for i in keep.nonzero()[0]], [int(i) for i in (~keep).nonzero()[0]]
    source = gguf_source(stage.params.base.model, cfg.gguf)
    shutil.rmtree(paths.export, ignore_errors=True)

    model, tokenizer = load_model(str(paths.repaired), dtype=torch.float32)  # fp32: the weights evaluate measured
    files = save_shippable(model, tokenizer, paths.export / "model", cfg.dtype)
    licence = None
    if source is not None:
        shipped_gguf = write_gguf(model, source, paths.export / GGUF_NAME, kept, dropped)
        files[GGUF_NAME] = shipped_gguf.bytes
        licence = shipped_gguf.license
    facts = card_facts(paths, stage.params, files, "dvc repro export", git_commit(paths.root), licence)
    card = write_card(paths.export / "model", facts)
    files["README.md"] = card.stat().st_size  # the card lists the files written before it, not itself
    checks = check_roundtrip(
        model, paths.export, read_windows(paths.validation)[: cfg.check_windows], with_gguf=source is not None
    )

    info = {
        "dtype": cfg.dtype,
        "dropped_layers": dropped,
        "parameters": parameter_count(model),
        "files_bytes": files,
        "hf_mb": directory_mb(paths.export / "model"),
        "source_gguf_bytes": source.stat().st_size if source is not None else None,
        "gguf": None
        if source is None
        else {"copied": len(shipped_gguf.copied), "requantised": shipped_gguf.requantised, "n_blocks": len(kept)},
        "checks": checks,
    }
    info["registered"] = None
    write_json(paths.metrics_file("export"), info)  # the export is complete: tracking below cannot lose it

    with stage.tracking() as tracker:
        tracker.log_metrics({"hf_mb": info["hf_mb"], "parameters": info["parameters"]})
        tracker.log_metrics({f"check.{fmt}.ppl": r["ppl"] for fmt, r in checks.items() if isinstance(r, dict)})
        if source is not None:
            tracker.log_metrics({"gguf_mb": files[GGUF_NAME] / 2**20})
        if info["hf_mb"] > cfg.mlflow_max_mb:
            log_model_dir(tracker, paths.export / "model", "model", max_mb=cfg.mlflow_max_mb)  # a reference only
            tracker.set_tags({"registry": f"not registered: {info['hf_mb']:.0f} MiB > export.mlflow_max_mb"})
        else:
            info["registered"] = register_export(tracker, paths.export / "model", cfg, facts, card.read_text())
            if info["registered"] is not None:
                write_json(paths.metrics_file("export"), info)
    reg = info["registered"]
    print(
        f"exported {len(kept)} layers in {cfg.dtype}: {info['hf_mb']:.1f} MiB HF folder"
        + (
            f", {files[GGUF_NAME] / 2**20:.1f} MiB GGUF ({len(shipped_gguf.requantised)} tensors requantised)"
            if source is not None
            else ""
        )
        + (f"; registered {reg['name']} version {reg['version']}" if reg else "")
    )
    return info


if __name__ == "__main__":
    stage_main(export)
