"""The base of every rules-file model: unknown keys are errors and values never change."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
"""What a backend, route, alias, tenant or rule may be called."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
