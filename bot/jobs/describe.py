"""/describe: a picture turned into four prompts a member can start from, by the captioner (Florence-2).

A description is a job like any other (queued fairly, batched across members, run by a worker, never on the
event loop), of kind ``describe``: its one picture is kept as its source, and the worker asks the captioner the
four tasks of ``models.captioners.DESCRIBE_TASKS`` (a caption, a detailed one, a more detailed one, and the
objects it sees); what comes back is four texts, numbered in the result, each with a button that starts an
/imagine of it for whoever presses it. It costs ``DESCRIBE_COST`` credits.
"""

from __future__ import annotations

from typing import Final

from bot.jobs.recipe import JobKind, Recipe, random_seeds
from models.captioners import DESCRIBE_TASKS

#: Credits a /describe costs: a captioner's pass is a small share of one image's diffusion.
DESCRIBE_COST: Final = 1
#: The recipe's prompt: what its row and its parameters say it did.
DESCRIBED: Final = "described"


def describe_recipe(captioner: str, picture: str, size: tuple[int, int]) -> Recipe:
    """The job that describes the kept ``picture`` (of ``size``) with ``captioner``: one image read, one seed."""
    width, height = size
    return Recipe(
        kind=JobKind.DESCRIBE,
        prompt=DESCRIBED,
        negative_prompt="",
        model=captioner,
        width=width,
        height=height,
        steps=1,
        guidance=0.0,
        seeds=random_seeds(1),
        scheduler="",
        source=picture,
    )


def describe_tasks() -> tuple[str, ...]:
    """The captioner's four tasks, one prompt each, in the order the result numbers them."""
    return DESCRIBE_TASKS
