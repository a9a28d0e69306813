"""The worker protocol's version is derived from the messages' fields, and a message with other fields is refused.

A peer "built from other definitions" is a real process of this repository whose ``Recipe`` has one
field more, given to it by a ``sitecustomize`` module on its ``PYTHONPATH`` only: what an older or
newer ``python -m bot worker`` on another host looks like to the bot. Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from bot.images.metadata import EncodedImage
from bot.jobs.events import JobOutput
from bot.jobs.recipe import JobKind
from bot.workers.protocol import (
    PROTOCOL_VERSION,
    ProtocolMismatch,
    Result,
    Run,
    RunJob,
    Side,
    WorkOrder,
    decode,
    encode,
)
from tests.recipes import a_recipe

REPOSITORY = Path(__file__).resolve().parent.parent
WAIT_S = 120.0  # generous: a busy 2-core machine
SAME_VERSION = "run the same version of Latentcord on the bot and every worker."

#: A sitecustomize that gives this process's Recipe one field more than the repository's.
ONE_FIELD_MORE = """
import dataclasses

import bot.jobs.recipe

bot.jobs.recipe.Recipe = dataclasses.make_dataclass(
    "Recipe",
    [("sharpness", float, dataclasses.field(default=0.0))],
    bases=(bot.jobs.recipe.Recipe,),
    namespace={"__module__": "bot.jobs.recipe"},  # pickled by name, as the real one is
    frozen=True,
    slots=True,
    kw_only=True,
)
"""


@pytest.fixture
def other_fields(tmp_path: Path) -> str:
    """A PYTHONPATH on which this repository's Recipe has one field more."""
    folder = tmp_path / "other-fields"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(ONE_FIELD_MORE)
    return os.pathsep.join([str(folder), str(REPOSITORY)])


def version_in_a_process(pythonpath: str, hash_seed: str = "0") -> str:
    """PROTOCOL_VERSION as a fresh interpreter with ``pythonpath`` computes it."""
    environment = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONHASHSEED": hash_seed}
    command = "from bot.workers.protocol import PROTOCOL_VERSION; print(PROTOCOL_VERSION)"
    done = subprocess.run(
        [sys.executable, "-c", command], env=environment, capture_output=True, text=True, timeout=WAIT_S, check=True
    )
    return done.stdout.strip()


# -- the version ---------------------------------------------------------------------------------


def test_the_version_is_the_same_in_every_process_and_another_where_the_recipe_has_one_field_more(
    other_fields: str,
) -> None:
    # Derived, not salted: two interpreters with different hash seeds agree with this one.
    assert version_in_a_process(str(REPOSITORY), "1") == version_in_a_process(str(REPOSITORY), "2") == PROTOCOL_VERSION
    assert version_in_a_process(other_fields) != PROTOCOL_VERSION


# -- what a decoder refuses ----------------------------------------------------------------------


def every_field_set() -> Run:
    recipe = a_recipe(
        kind=JobKind.REGION,
        parent_job_id=7,
        parent_image=2,
        source="uploads/ab/cd.png",
        mask="region:0.1,0.2,0.5,0.6",
        loras=("ink:0.8:" + "a" * 64,),
        embeddings=("style:" + "b" * 64,),
        style="noir",
        chunks=2,
        strength=1.0,
    )
    order = WorkOrder(job_id=9, owner=3, recipe=recipe, source=b"\x89PNG\r\n\x1a\n\x00\xff", classify=False)
    return Run(batch_id="b1", jobs=(RunJob(order, attempt=2, token="t-9"),), nsfw_threshold=0.7, preview_interval_s=1.5)


def with_recipe_changed(run: Run, change: Callable[[dict[str, object]], None]) -> bytes:
    """``run``'s bytes with its first job's recipe map changed, as a peer built from other fields would send them."""
    value = msgspec.msgpack.decode(encode(run))
    change(value["jobs"][0]["order"]["recipe"])
    return msgspec.msgpack.encode(value)


def test_a_run_crosses_unchanged_and_one_with_a_recipe_field_the_worker_does_not_know_is_refused() -> None:
    run = every_field_set()
    back = decode(encode(run), reader=Side.WORKER)
    assert isinstance(back, Run) and dataclasses.asdict(back) == dataclasses.asdict(run)

    with pytest.raises(ProtocolMismatch) as refused:
        decode(with_recipe_changed(run, lambda recipe: recipe.update(sharpness=0.5)), reader=Side.WORKER)
    assert str(refused.value) == (
        "Refused a Run from the bot that this worker cannot read (Object contains unknown field `sharpness` - at "
        f"`$.jobs[0].order.recipe`), although both speak worker protocol {PROTOCOL_VERSION}; {SAME_VERSION}"
    )
    with pytest.raises(ProtocolMismatch, match="missing required field `chunks`"):
        decode(with_recipe_changed(run, lambda recipe: recipe.pop("chunks")), reader=Side.WORKER)


def test_a_result_crosses_byte_for_byte() -> None:
    grid = EncodedImage(bytes(range(256)) * 1000, "grid.png", "image/png")
    output = JobOutput(9, 2, "t-9", grid, withheld=(1,), seeds=(2**32 - 1, 0), timings={"generation_s": 0.25})
    result = Result("w1", "boot-1", "b1", (output,), error=None, cancelled=(4,))
    back = decode(encode(result))
    assert isinstance(back, Result)
    assert dataclasses.asdict(back) == dataclasses.asdict(result)
    assert back.outputs[0].grid.data == grid.data
