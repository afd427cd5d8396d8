"""Typed readers of what stages measured: scoring, evaluation, model size, the surrogate's fidelity, compare."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapprune.config import ConfigError
from shapprune.scoring import NLL
from tasks.shared.contracts.json_io import _num, _opt, read_json, read_record


@dataclass(frozen=True)
class ScoringSummary:
    """``data/metrics/score_masks.json``: what scoring the masks cost and the full model's calibration NLL."""

    n_masks: int
    n_nonfinite: int
    full_ppl: float
    full_nll_mean: float
    calibration_tokens: int
    seconds: float
    seconds_per_mask: float
    device: str
    dtype: str | None = None  # the precision masks were scored in (None: an older file)
    stop: str = "cap"  # score_masks.stop: "decision" (rounds, shapprune/rounds.py) or "cap" (the whole design)
    n_design: int | None = None  # design masks scored (None: every mask is a design mask)
    stop_reason: str | None = None  # "resolved" | "cap" (stop: decision)
    n_rounds: int | None = None

    @property
    def design_in_part(self) -> bool:
        """Whether the rounds stopped before the whole design was scored."""
        return self.stop == "decision"

    @property
    def full_nll(self) -> NLL:
        """The full model's summed NLL over the calibration tokens."""
        return NLL(self.full_nll_mean * self.calibration_tokens, self.calibration_tokens)

    @classmethod
    def read(cls, path: Path) -> ScoringSummary:
        d = read_json(path)
        try:
            return cls(
                int(d["n_masks"]),
                int(d["n_nonfinite"]),
                _num(d["full_ppl"]),
                _num(d["full_nll_mean"]),
                int(d["calibration_tokens"]),
                _num(d["seconds"]),
                _num(d["seconds_per_mask"]),
                str(d["device"]),
                d.get("dtype"),
                str(d.get("stop", "cap")),
                d.get("n_design"),
                d.get("stop_reason"),
                d.get("n_rounds"),
            )
        except KeyError as err:
            raise ConfigError(
                f"{path}: no {err} (written by an older version); rerun `dvc repro score_masks`"
            ) from None


@dataclass(frozen=True)
class TaskScore:
    """One zero-shot task of an evaluation: accuracies with their standard errors over ``n`` items."""

    acc: float
    acc_stderr: float
    acc_norm: float
    acc_norm_stderr: float
    n: int
    hits: tuple[int, ...] = ()  # each item's 0/1 acc in the items' order (empty in files written before it)
    chance: float | None = None  # the mean of 1 / choices: a model that guesses
    majority: float | None = None  # always the answer at the position most often right (BoolQ: "yes")

    @property
    def above_floor(self) -> bool | None:
        """Whether acc is above both chance and the majority-class rate beyond its 95 % interval (None: unknown)."""
        if self.chance is None or self.majority is None:
            return None
        return self.acc - 1.96 * self.acc_stderr > max(self.chance, self.majority)


@dataclass(frozen=True)
class EvalSummary:
    """``data/metrics/eval_<which>.json``: held-out perplexity per corpus and zero-shot accuracy per task."""

    which: str
    n_layers: int
    ppl: dict[str, float]
    zero_shot: dict[str, TaskScore]
    mean_acc: float
    mean_acc_norm: float
    tokens_per_s: float
    dtype: str | None = None  # the precision it was evaluated in (None: an older file)
    lm_eval: dict[str, dict[str, float]] = field(default_factory=dict)  # lm-eval task -> its metrics

    @classmethod
    def read(cls, path: Path) -> EvalSummary:
        d = read_json(path)
        try:
            zero = {
                t: TaskScore(_num(r["acc"]), _num(r["acc_stderr"]), _num(r["acc_norm"]), _num(r["acc_norm_stderr"]),
                             int(r["n"]), tuple(int(h) for h in r.get("hits") or ()), _opt(r.get("chance")),
                             _opt(r.get("majority")))
                for t, r in (d.get("zero_shot") or {}).items()
            }  # fmt: skip
            return cls(
                str(d["which"]),
                int(d["n_layers"]),
                {c: _num(v) for c, v in d["ppl"].items()},
                zero,
                _num(d["mean_acc"]),
                _num(d["mean_acc_norm"]),
                _num(d["tokens_per_s"]),
                d.get("dtype"),
                {t: {k: _num(v) for k, v in r.items()} for t, r in (d.get("lm_eval") or {}).items()},
            )
        except KeyError as err:
            which = path.stem.removeprefix("eval_")
            raise ConfigError(
                f"{path}: no {err} (written by an older version); rerun `dvc repro evaluate@{which}`"
            ) from None


@dataclass(frozen=True)
class ModelSize:
    """A model's size as a record states it: ``data/metrics/prepare_model.json`` or ``eval_<which>.json``."""

    n_layers: int
    parameters: int
    source: str | None = None  # the weights it was read from (prepare_model's record only)

    @classmethod
    def read(cls, path: Path) -> ModelSize:
        d = read_json(path)
        try:
            return cls(int(d["n_layers"]), int(d["parameters"]), d.get("source"))
        except KeyError as err:
            raise ConfigError(f"{path}: no {err} (written by an older version); rerun `dvc repro`") from None


@dataclass(frozen=True)
class SurrogateFidelity:
    """``data/metrics/fit_surrogate.json``: how well the surrogate predicts the masks it was not trained on."""

    n_validation: int
    r2: float
    spearman: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurrogateFidelity:
        held = d["validation"]
        return cls(int(d["n_validation"]), _num(held["r2"]), _num(held["spearman"]))

    @classmethod
    def read(cls, path: Path) -> SurrogateFidelity:
        return read_record(path, cls.from_dict, "fit_surrogate")


@dataclass(frozen=True)
class SurrogateRecord:
    """``data/surrogate/surrogate.json``'s provenance: the model and utility the surrogate was trained for."""

    model: str | None
    utility: str | None

    @classmethod
    def read(cls, directory: Path) -> SurrogateRecord:
        d = read_json(directory / "surrogate.json")
        return cls(d.get("model"), d.get("utility"))


@dataclass(frozen=True)
class CompareSummary:
    """``data/compare/compare.json``, as far as another stage reads it: how many rows were compared."""

    n_rows: int

    @classmethod
    def read(cls, path: Path) -> CompareSummary:
        """The summary; a missing file reads as nothing compared (compare is optional for the report)."""
        return cls(len(read_json(path).get("rows") or [])) if path.is_file() else cls(0)
