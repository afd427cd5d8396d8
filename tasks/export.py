"""Prefect tasks of the ``export`` stage: the shippable HF folder with its card, the GGUF file, their checks."""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from transformers import AutoModelForCausalLM, PreTrainedModel

from shapprune.config import ConfigError, Export
from shapprune.export.card import CardFacts, Evaluation, model_card
from shapprune.export.gguf import GGUFExport, attention_heads, export_gguf
from shapprune.export.gguf_convert import CONVERTER, convert_gguf, unsupported
from shapprune.model_source import resolve_source
from shapprune.models import DTYPES, load_model, one_gguf_parse, save_model
from shapprune.scoring import window_nll
from tasks.export_registry import register_model
from tasks.shared.contracts import EvalSummary, PruningRecord, RepairSummary
from tasks.shared.paths import Paths
from tasks.shared.tracking import Tracker

GGUF_NAME = "model.gguf"


def evaluation(path: Path) -> Evaluation:
    """``data/metrics/eval_<which>.json`` as the card's :class:`Evaluation`."""
    d = EvalSummary.read(path)
    return Evaluation(dict(d.ppl), {t: (r.acc, r.acc_stderr, r.n) for t, r in d.zero_shot.items()})


@dataclass(frozen=True)
class GGUFPlan:
    """How ``model.gguf`` is made: the source GGUF cut (``source`` set), or a conversion to ``qtype``."""

    source: Path | None
    qtype: str | None = None


def gguf_plan(spec: str, mode: str, qtype: str, repaired: Path) -> GGUFPlan | None:
    """Whether and how to write ``model.gguf`` (``export.gguf``; ``auto``: whenever one can be written here).

    A GGUF source is cut; another source is converted when :func:`unsupported` allows it (the model's
    ``config.json`` and ``tokenizer.json`` in ``repaired``). Decided before anything is written.
    """
    if mode == "false":
        return None
    source = resolve_source(spec)
    if source.gguf_file is not None:
        return GGUFPlan(Path(source.location) / source.gguf_file)
    config = json.loads((repaired / "config.json").read_text()) if (repaired / "config.json").is_file() else {}
    reason = unsupported(config, repaired)
    if reason is None:
        return GGUFPlan(None, qtype)
    if mode == "true":
        raise ConfigError(f"export.gguf: true, but base.model '{spec}' is no GGUF and {reason}; {CONVERTER}")
    print(f"export: no model.gguf ({reason}); {CONVERTER}")
    return None


@task(name="save-shippable", cache_policy=NO_CACHE)
def save_shippable(model: PreTrainedModel, tokenizer: object, out: Path, dtype: str) -> dict[str, int]:
    """``model`` in ``dtype`` with its tokenizer and generation config under ``out``; returns file -> bytes."""
    shipped = copy.deepcopy(model).to(DTYPES[dtype])  # a copy: ``model`` stays the fp32 reference
    save_model(shipped, tokenizer, out)
    return {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file()}


@task(name="write-gguf", cache_policy=NO_CACHE)
def write_gguf(
    model: PreTrainedModel, source: Path, out: Path, kept: list[int], dropped: list[int], changed_type: str
) -> GGUFExport:
    """The source GGUF cut to the kept blocks; the tensors the repair changed are quantised again (``changed_type``)."""
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    heads = attention_heads(model.config)
    extra = {"shapprune.dropped_layers": ",".join(map(str, dropped))}
    return export_gguf(source, out, kept, state, heads, extra, changed_type)


@task(name="convert-gguf", cache_policy=NO_CACHE)
def convert_to_gguf(model: PreTrainedModel, folder: Path, out: Path, qtype: str, dropped: list[int]) -> GGUFExport:
    """A model that came from no GGUF written as one, its matrices in ``qtype`` (tokenizer from ``folder``)."""
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    extra = {"shapprune.dropped_layers": ",".join(map(str, dropped))}
    return convert_gguf(state, model.config.to_dict(), folder, out, qtype, extra)


@task(name="check-roundtrip", cache_policy=NO_CACHE)
def check_roundtrip(reference: PreTrainedModel, out: Path, windows: np.ndarray, with_gguf: bool) -> dict:
    """Reload each shipped file as a user would and compare its NLL and logits with the fp32 model in memory."""

    ids = torch.as_tensor(windows[:1])  # [1, T]
    with torch.no_grad():
        expected = reference(ids).logits  # [1, T, V], once for every file compared

    def compare(loaded: PreTrainedModel) -> dict:
        with torch.no_grad():
            gap = (loaded(ids).logits - expected).abs().max().item()
        nll = window_nll(loaded, windows).mean  # loaded in fp32 (a GGUF model refuses a later .float())
        return {"nll": nll, "ppl": math.exp(nll), "max_abs_logit_diff": gap}

    result = {"windows": int(len(windows)), "fp32": {"nll": window_nll(reference, windows).mean}}
    result["fp32"]["ppl"] = math.exp(result["fp32"]["nll"])
    result["hf"] = compare(AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32).eval())
    if with_gguf:
        with one_gguf_parse():  # transformers' own loader, the file parsed once for config and weights
            loaded = AutoModelForCausalLM.from_pretrained(out, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
        result["gguf"] = compare(loaded)
    return result


def register_export(tracker: Tracker, folder: Path, cfg: Export, facts: CardFacts, card: str) -> dict | None:
    """The shipped folder as a new version in MLflow's registry; None (with a warning) if MLflow fails."""
    name = cfg.registered_name or f"shapprune-{facts.base_model.rsplit('/', 1)[-1]}"
    tags = {"method": facts.method, "k": len(facts.dropped), "repair": facts.repair}
    tags |= {f"ppl_{corpus}": f"{ppl:.3f}" for corpus, ppl in facts.pruned.ppl.items()}
    try:
        shipped, tokenizer = load_model(str(folder), dtype=DTYPES[cfg.dtype])
        registered = register_model(tracker, shipped, tokenizer, name, tags, card)
    except Exception as err:  # tracking never fails a stage whose work is done
        print(f"WARNING: could not register the model in MLflow: {err}", file=sys.stderr)
        return None
    return None if registered is None else {"name": name, "version": registered.version, "uri": registered.uri}


def card_facts(paths: Paths, params, files: dict[str, int], command: str, commit: str, licence: str | None):
    """The card's facts from prune's, repair's and evaluate's outputs (``params``: the stage's ParamsView)."""
    pruning = PruningRecord.read(paths.pruned)
    repair = RepairSummary.read(paths.repaired / "repair.json")
    detail = []
    if repair.linear:
        runs = ", ".join(f"{r.start}-{r.stop - 1}" for r in repair.linear.repaired)
        what = "projections refitted" if repair.linear.fit == "refit" else "maps merged"
        detail.append(f"least-squares {what} before the removed runs {runs}" if runs else "no run repaired")
    if repair.lora:
        detail.append(f"LoRA {repair.lora.steps} steps, merged")
    if detail and repair.text:
        detail.append(f"on {repair.windows} windows of {repair.text} text")
    base = params.export.base_model or params.base.model
    data = params.prepare_data
    in_domain = {role: bool(shared) for role, shared in data.domain_labels().items()}
    return CardFacts(
        name=f"{base.rsplit('/', 1)[-1]}, {pruning.n_dropped} layers removed",
        base_model=base,
        source=params.base.model,
        method=pruning.method,
        n_layers_before=pruning.n_layers_before,
        dropped=pruning.dropped_layers,
        parameters_before=pruning.parameters_before,
        parameters_after=pruning.parameters_after if repair.parameters is None else repair.parameters,
        repair=repair.method,
        repair_detail="; ".join(detail),
        llm_evaluations=pruning.llm_evaluations,
        dtype=params.export.dtype,
        full=evaluation(paths.eval_metrics("full")),
        pruned=evaluation(paths.eval_metrics("repaired")),
        command=command,
        commit=commit,
        license=licence,
        files=files,
        in_domain=in_domain,
        target=pruning.target.line() if pruning.target else None,
    )


def write_card(out: Path, facts: CardFacts) -> Path:
    path = out / "README.md"
    path.write_text(model_card(facts))
    return path
