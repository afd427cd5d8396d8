"""Stage ``export``: the model a user ships, from the repaired weights (``repair.method: none`` is the pruned model).

Writes ``data/export/model/`` (a ``save_pretrained`` folder in ``export.dtype`` with tokenizer, generation
config and a model card ``README.md``), ``data/export/model.gguf`` (``export.gguf``: the source GGUF cut to
the kept blocks, unchanged tensors in their quantisation, changed ones in ``export.gguf_changed``; another
source converted, its matrices in ``export.gguf_type``)
and ``data/metrics/export.json`` (sizes, and each file reloaded as a user would, checked against the fp32
model on ``export.check_windows`` validation windows). In MLflow the folder becomes a ``transformers``-flavour
model registered as a new version of ``export.registered_name``, unless it is over ``export.mlflow_max_mb``
(then only a reference to the DVC-tracked copy is logged).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import torch
from prefect import flow
from transformers import PreTrainedModel

from shapprune.export.card import CardFacts
from shapprune.models import load_model, parameter_count
from tasks.export import (
    GGUF_NAME,
    GGUFPlan,
    card_facts,
    check_roundtrip,
    convert_to_gguf,
    gguf_plan,
    register_export,
    save_shippable,
    write_card,
    write_gguf,
)
from tasks.shared.artifacts import read_windows
from tasks.shared.contracts import kept_mask, write_json
from tasks.shared.lifecycle import Figures, run_stage
from tasks.shared.mlflow_runs import git_commit
from tasks.shared.runtime import Stage, stage_main
from tasks.shared.tracking import Tracker, directory_mb, log_model_dir


@dataclass(frozen=True)
class Repaired:
    """The repaired model in fp32 (the weights evaluate measured), the layers it keeps and the GGUF plan."""

    model: PreTrainedModel
    tokenizer: object
    kept: list[int]
    dropped: list[int]
    plan: GGUFPlan | None  # None: no model.gguf


@dataclass
class Shipped:
    """What ``compute`` shipped: the record (``data/metrics/export.json``), the card's facts and text."""

    info: dict
    facts: CardFacts
    card: str
    n_kept: int


class Export:
    """The shippable HF folder (``export.dtype``), the GGUF and the card, each reloaded as a user would and
    checked against the fp32 weights; the folder registered in MLflow's model registry."""

    name = "export"

    def read(self, stage: Stage) -> Repaired:
        """The layers prune kept, how the GGUF is made (decided before anything is written), the fp32 model."""
        paths, cfg = stage.paths, stage.params.export
        keep = kept_mask(paths.pruned)
        kept, dropped = [int(i) for i in keep.nonzero()[0]], [int(i) for i in (~keep).nonzero()[0]]
        plan = gguf_plan(stage.params.base.model, cfg.gguf, cfg.gguf_type, paths.repaired)
        model, tokenizer = load_model(str(paths.repaired), dtype=torch.float32)
        return Repaired(model, tokenizer, kept, dropped, plan)

    def compute(self, stage: Stage, rep: Repaired) -> Shipped:
        """Ship the folder, the GGUF and the card, and check each file as reloaded: the tasks write the shipped
        files under ``data/export/`` as they make them, since the checks read them back."""
        paths, cfg, model, plan = stage.paths, stage.params.export, rep.model, rep.plan
        source = plan.source if plan is not None else None
        shutil.rmtree(paths.export, ignore_errors=True)
        files = save_shippable(model, rep.tokenizer, paths.export / "model", cfg.dtype)
        licence, gguf = None, None
        if plan is not None:
            if source is not None:
                shipped_gguf = write_gguf(
                    model, source, paths.export / GGUF_NAME, rep.kept, rep.dropped, cfg.gguf_changed
                )
            else:
                shipped_gguf = convert_to_gguf(model, paths.repaired, paths.export / GGUF_NAME, plan.qtype, rep.dropped)
            files[GGUF_NAME], licence = shipped_gguf.bytes, shipped_gguf.license
            gguf = {
                "copied": len(shipped_gguf.copied),
                "requantised": shipped_gguf.requantised,
                "n_blocks": len(rep.kept),
            }
            gguf["made"] = "cut from the source" if source is not None else f"converted ({plan.qtype})"
        facts = card_facts(paths, stage.params, files, "dvc repro export", git_commit(paths.root), licence)
        card = write_card(paths.export / "model", facts)
        files["README.md"] = card.stat().st_size  # the card lists the files written before it, not itself
        checks = check_roundtrip(
            model, paths.export, read_windows(paths.validation)[: cfg.check_windows], with_gguf=plan is not None
        )
        info = {
            "dtype": cfg.dtype,
            "dropped_layers": rep.dropped,
            "parameters": parameter_count(model),
            "files_bytes": files,
            "hf_mb": directory_mb(paths.export / "model"),
            "source_gguf_bytes": source.stat().st_size if source is not None else None,
            "gguf": gguf,
            "checks": checks,
            "registered": None,
        }
        return Shipped(info, facts, card.read_text(), len(rep.kept))

    def write(self, stage: Stage, shipped: Shipped) -> Figures:
        """``export.json``, then the folder registered as a new model version (unless it is over
        ``export.mlflow_max_mb``) and ``export.json`` again, naming the version. The record is written first: a
        registry that fails (a warning, ``registered: null``) cannot lose the export."""
        paths, cfg, info = stage.paths, stage.params.export, shipped.info
        write_json(paths.metrics_file("export"), info)
        if info["hf_mb"] <= cfg.mlflow_max_mb:
            info["registered"] = register_export(
                stage.tracker, paths.export / "model", cfg, shipped.facts, shipped.card
            )
            if info["registered"] is not None:
                write_json(paths.metrics_file("export"), info)
        return {}

    def log(self, tracker: Tracker, stage: Stage, shipped: Shipped) -> None:
        """Sizes and check perplexities; a folder too big to register only referenced (``export.mlflow_max_mb``)."""
        paths, cfg, info = stage.paths, stage.params.export, shipped.info
        tracker.log_metrics({"hf_mb": info["hf_mb"], "parameters": info["parameters"]})
        tracker.log_metrics({f"check.{fmt}.ppl": r["ppl"] for fmt, r in info["checks"].items() if isinstance(r, dict)})
        if GGUF_NAME in info["files_bytes"]:
            tracker.log_metrics({"gguf_mb": info["files_bytes"][GGUF_NAME] / 2**20})
        if info["hf_mb"] > cfg.mlflow_max_mb:
            log_model_dir(tracker, paths.export / "model", "model", max_mb=cfg.mlflow_max_mb)  # a reference only
            tracker.set_tags({"registry": f"not registered: {info['hf_mb']:.0f} MiB > export.mlflow_max_mb"})

    def summary(self, shipped: Shipped) -> str:
        """One line: layers, precision, sizes, requantised tensors, the registered version."""
        info, reg = shipped.info, shipped.info["registered"]
        line = f"exported {shipped.n_kept} layers in {info['dtype']}: {info['hf_mb']:.1f} MiB HF folder"
        if info["gguf"] is not None:
            gguf_mb = info["files_bytes"][GGUF_NAME] / 2**20
            made = info["gguf"]["made"]
            line += f", {gguf_mb:.1f} MiB GGUF ({made}; {len(info['gguf']['requantised'])} tensors written anew)"
        return line + (f"; registered {reg['name']} version {reg['version']}" if reg else "")

    def returns(self, shipped: Shipped) -> dict:
        return shipped.info


@flow(name="export", log_prints=True)
def export(root: str = ".") -> dict:
    return run_stage(Export(), root)


if __name__ == "__main__":
    stage_main(export)
