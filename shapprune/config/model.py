"""The model and the text: ``base``, ``prepare_model`` and ``prepare_data``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from shapprune.config.section import WindowCount, _Section
from shapprune.data.domains import label_corpora
from shapprune.data.hub import HF_ALIASES, parse_hf_source
from shapprune.data.sources import OFFLINE_SOURCES

SOURCE_FORMS = (
    f"use one of {', '.join(OFFLINE_SOURCES)} (offline), {', '.join(HF_ALIASES)} "
    "or hf:<path>[:<config>[:<split>[:<text_field>]]] (the Hub)"
)


def unknown_sources(names: list[str]) -> list[str]:
    """The names ``shapprune.data.load_documents`` cannot read: neither an offline source nor a Hub spec."""
    return [name for name in names if name not in OFFLINE_SOURCES and not _hub_spec(name)]


def _hub_spec(name: str) -> bool:
    try:
        return name.startswith("hf:") and bool(parse_hf_source(name))
    except ValueError:
        return False


def _check_sources(names: list[str]) -> None:
    bad = unknown_sources(names)
    if bad:
        raise ValueError(f"unknown text source {', '.join(map(repr, bad))}; {SOURCE_FORMS}")


class Base(_Section):
    seed: int = Field(ge=0)
    model: str
    revision: str | None = Field(description="hub ids only: the commit, tag or branch to load; null = main")
    device: str
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    threads: int = Field(ge=0, description="torch CPU threads; 0 keeps torch's default")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "mps", "map") and not v.startswith("cuda"):
            raise ValueError("use auto, cpu, cuda, cuda:N or map (the layers spread over every GPU)")
        return v


class PrepareModel(_Section):
    pass


class PrepareData(_Section):
    calibration_source: str
    eval_corpora: dict[str, str]
    seq_len: int = Field(ge=8)
    calibration_windows: int = Field(ge=1)
    validation_windows: int = Field(ge=0)
    repair_windows: int = Field(ge=0, description="windows of text for the repair stage's fit and LoRA")
    repair_mix: dict[str, float] | None = Field(
        description="source -> share of the repair windows (e.g. wiki_extracts 0.5, coqa_stories 0.5); "
        "null = calibration-source text only",
    )
    eval_windows: WindowCount = Field(ge=1, description="held-out windows per corpus; all (or null) = every one")
    eval_seq_len: int | None = Field(
        ge=8, description="tokens per held-out window; null = seq_len (2048: SLEB's and LinearPatch's protocol)"
    )
    calibration_fraction: float = Field(gt=0, lt=1)
    validation_fraction: float = Field(ge=0, lt=1)
    add_bos: Literal["auto", True, False]

    @field_validator("calibration_source")
    @classmethod
    def _calibration_source(cls, v: str) -> str:
        _check_sources([v])
        return v

    @field_validator("eval_corpora", "repair_mix")
    @classmethod
    def _source_names(cls, v: dict | None, info: ValidationInfo) -> dict | None:
        _check_sources(list((v or {}).values() if info.field_name == "eval_corpora" else (v or {})))
        return v

    @model_validator(mode="after")
    def _fractions(self) -> PrepareData:
        if self.calibration_fraction + self.validation_fraction >= 1:
            raise ValueError("calibration_fraction + validation_fraction must leave room for held-out text (< 1)")
        if not self.eval_corpora:
            raise ValueError("eval_corpora is empty; name at least one corpus")
        self._check_repair_mix()
        return self

    def sources(self) -> list[str]:
        """Every text source the windows are drawn from (calibration, held-out and repair mix), sorted."""
        return sorted({self.calibration_source, *self.eval_corpora.values(), *(self.repair_mix or {})})

    def feeding_sources(self) -> list[str]:
        """The sources the pipeline practises on: the calibration source and the repair text's (the calibration
        source when ``repair_mix`` is null). A held-out corpus sharing an origin with one is in-domain."""
        return sorted({self.calibration_source, *(self.repair_mix or {})})

    def domain_labels(self) -> dict[str, list[str]]:
        """Held-out role -> the origins its source shares with the calibration or repair text (empty: out of
        domain; :func:`shapprune.data.domains.label_corpora`)."""
        return label_corpora(self.eval_corpora, self.feeding_sources())

    def _check_repair_mix(self) -> None:
        """A repair mix has positive shares and never reads a held-out corpus (the calibration source's held-out
        documents are split off, so it may appear)."""
        if self.repair_mix is None:
            return
        if not self.repair_mix or any(not share > 0 for share in self.repair_mix.values()):
            raise ValueError(f"repair_mix {self.repair_mix} needs positive shares; use null for calibration text only")
        for source in self.repair_mix:
            roles = [r for r, s in self.eval_corpora.items() if s == source and s != self.calibration_source]
            if roles:
                raise ValueError(
                    f"repair_mix: {source} is the held-out corpus {roles[0]!r} (eval_corpora); repair text must not "
                    "come from held-out text: use another source, e.g. coqa_stories"
                )
