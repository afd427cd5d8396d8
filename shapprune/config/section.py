"""What every ``params.yaml`` section shares: strict keys, and the one error type of bad params."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """Invalid params: one line per problem, each naming the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
