"""Jobs for tests that talk to the store directly: a real ``Recipe`` with the admission's fields; and the
engine's ``BatchSpec`` for tests (and benchmarks) that call the engine itself."""

from __future__ import annotations

import dataclasses
from typing import Any

from bot.jobs.recipe import JobKind, Recipe
from db.records import NewJob
from models.tiny import TINY_MODEL_ID
from models.types import BatchSpec, Operation

RECIPE_FIELDS = frozenset(field.name for field in dataclasses.fields(Recipe))


def a_recipe(**changes: Any) -> Recipe:
    fields: dict[str, Any] = {
        "kind": JobKind.IMAGINE,
        "prompt": "a lighthouse in a storm",
        "negative_prompt": "blurry",
        "model": "stabilityai/sdxl",
        "width": 1024,
        "height": 768,
        "steps": 30,
        "guidance": 6.5,
        "seeds": (11, 22, 33, 2**63 + 5),  # a seed bigger than SQLite's INTEGER survives as JSON
        "scheduler": "EulerAncestralDiscreteScheduler",
    }
    fields.update(changes)
    fields["kind"] = JobKind(fields["kind"])
    return Recipe(**fields)


def a_new_job(*, user_id: int = 1, guild_id: int | None = 10, cost: int = 4, **changes: Any) -> NewJob[Recipe]:
    """A job to admit; ``changes`` may name fields of the recipe or of the admission (``nsfw_allowed`` ...)."""
    recipe = a_recipe(**{name: value for name, value in changes.items() if name in RECIPE_FIELDS})
    admission = {name: value for name, value in changes.items() if name not in RECIPE_FIELDS}
    admission.setdefault("channel_id", 20)
    return NewJob(recipe=recipe, guild_id=guild_id, user_id=user_id, cost=cost, **admission)


def a_spec(**changes: Any) -> BatchSpec:
    """A txt2img batch of the tiny model at 64 px, 2 steps of Euler a; ``changes`` name ``BatchSpec``'s fields."""
    fields: dict[str, Any] = {
        "model": TINY_MODEL_ID,
        "operation": Operation.TXT2IMG,
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance": 7.0,
        "scheduler": "EulerAncestralDiscreteScheduler",
    }
    return BatchSpec(**{**fields, **changes})
