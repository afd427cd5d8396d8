"""What every ``params.yaml`` section shares: strict keys, and the one error type of bad params."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict


class ConfigError(ValueError):
    """Invalid params: one line per problem, each naming the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _count_or_all(what: str) -> BeforeValidator:
    """``all`` (or ``null``) -> None, a number stays a number; anything else names both forms."""

    def parse(v: object) -> object:
        if isinstance(v, str):
            if v != "all":
                raise ValueError(f"'{v}' is not a number of {what}; give one (e.g. 100) or all")
            return None
        return v

    return BeforeValidator(parse)


ItemCount = Annotated[int | None, _count_or_all("items")]  # a number of items per task, or all (None)
WindowCount = Annotated[int | None, _count_or_all("windows")]  # a number of windows per corpus, or all (None)
