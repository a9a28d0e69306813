"""The worker protocol's version is derived from the messages' fields, and a peer built from other fields is refused.

A peer "built from other definitions" is a real process of this repository whose ``BatchSpec`` has one
field more, given to it by a ``sitecustomize`` module on its ``PYTHONPATH`` only: what an older or
newer ``python -m bot worker`` on another host looks like to the bot. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from bot.gpu.broker import BOOT_FIELD, MESSAGE_FIELD, StreamKeys
from bot.gpu.config import WorkerConfig
from bot.images.encoding import EncodedImage
from bot.jobs.attempts import JobAttempts
from bot.jobs.events import Started
from bot.jobs.generation import batch_spec, work_order
from bot.jobs.recipe import JobKind, Recipe
from bot.wire import (
    PROTOCOL_VERSION,
    GenerationRequest,
    ImagePrompt,
    ImageRole,
    InputImage,
    JobOutput,
    ProtocolMismatch,
    Ready,
    Result,
    Run,
    RunJob,
    Side,
    decode,
    encode,
)
from bot.workers.dispatch import Dispatcher
from bot.workers.processes import ProcessTransport
from bot.workers.streams import StreamsTransport
from db.store import Store
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests.helpers import NoNsfw, Recorder
from tests.recipes import a_new_job, a_recipe
from tests.valkey_server import ThreadWorker, ValkeyServer
from tests.valkey_server import valkey as valkey_fixture

valkey = valkey_fixture  # a fresh server for each test

REPOSITORY = Path(__file__).resolve().parent.parent
WAIT_S = 120.0  # generous: a child imports torch and loads the model on a busy 2-core machine
SAME_VERSION = "run the same version of Latentcord on the bot and every worker."
TINY_RECIPE = a_recipe(model=TINY_MODEL_ID, width=64, height=64, steps=2, guidance=7.0, seeds=(1,), negative_prompt="")

#: A sitecustomize that gives this process's batch key (what a request carries) one field more than the repository's.
ONE_FIELD_MORE = """
import dataclasses

import models.types

models.types.BatchSpec = dataclasses.make_dataclass(
    "BatchSpec",
    [("sharpness", float, dataclasses.field(default=0.0))],
    bases=(models.types.BatchSpec,),
    namespace={"__module__": "models.types"},  # pickled by name, as the real one is
    frozen=True,
    slots=True,
)
"""


@pytest.fixture
def other_fields(tmp_path: Path) -> str:
    """A PYTHONPATH on which this repository's BatchSpec has one field more."""
    folder = tmp_path / "other-fields"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(ONE_FIELD_MORE)
    return os.pathsep.join([str(folder), str(REPOSITORY)])


def version_in_a_process(pythonpath: str, hash_seed: str = "0") -> str:
    """PROTOCOL_VERSION as a fresh interpreter with ``pythonpath`` computes it."""
    environment = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONHASHSEED": hash_seed}
    command = "from bot.wire import PROTOCOL_VERSION; print(PROTOCOL_VERSION)"
    done = subprocess.run(
        [sys.executable, "-c", command], env=environment, capture_output=True, text=True, timeout=WAIT_S, check=True
    )
    return done.stdout.strip()


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        await asyncio.sleep(0.1)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("Refused")]


# -- the version ---------------------------------------------------------------------------------


def test_the_version_is_the_same_in_every_process_and_another_where_the_request_has_one_field_more(
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
    request = GenerationRequest(
        job_id=9,
        spec=batch_spec(recipe),
        images=(ImagePrompt("a (fox)1.2", "blurry", 2**32 - 1), ImagePrompt("a (fox)1.2", "blurry", 0)),
        inputs=(InputImage(ImageRole.SOURCE, b"\x89PNG\r\n\x1a\n\x00\xff"), InputImage(ImageRole.MASK, b"\x00\xff")),
        classify=False,
        parameters="a fox\nSteps: 2",
        stem="latentcord-9",
        names={"a" * 64: "ink", "b" * 64: "style"},
    )
    return Run(
        batch_id="b1", jobs=(RunJob(request, attempt=2, token="t-9"),), nsfw_threshold=0.7, preview_interval_s=1.5
    )


def with_spec_changed(run: Run, change: Callable[[dict[str, object]], None]) -> bytes:
    """``run``'s bytes with its first job's batch key changed, as a peer built from other fields would send them."""
    value = msgspec.msgpack.decode(encode(run))
    change(value["jobs"][0]["request"]["spec"])
    return msgspec.msgpack.encode(value)


def test_a_run_crosses_unchanged_and_one_with_a_request_field_the_worker_does_not_know_is_refused() -> None:
    run = every_field_set()
    back = decode(encode(run), reader=Side.WORKER)
    assert isinstance(back, Run) and dataclasses.asdict(back) == dataclasses.asdict(run)

    with pytest.raises(ProtocolMismatch) as refused:
        decode(with_spec_changed(run, lambda spec: spec.update(sharpness=0.5)), reader=Side.WORKER)
    assert str(refused.value) == (
        "Refused a Run from the bot that this worker cannot read (Object contains unknown field `sharpness` - at "
        f"`$.jobs[0].request.spec`), although both speak worker protocol {PROTOCOL_VERSION}; {SAME_VERSION}"
    )
    with pytest.raises(ProtocolMismatch, match="missing required field `prompt_chunks`"):
        decode(with_spec_changed(run, lambda spec: spec.pop("prompt_chunks")), reader=Side.WORKER)


def test_a_result_crosses_byte_for_byte() -> None:
    grid = EncodedImage(bytes(range(256)) * 1000, "grid.png", "image/png")
    output = JobOutput(9, 2, "t-9", grid, withheld=(1,), seeds=(2**32 - 1, 0), timings={"generation_s": 0.25})
    result = Result("w1", "boot-1", "b1", (output,), error=None, cancelled=(4,))
    back = decode(encode(result))
    assert isinstance(back, Result)
    assert dataclasses.asdict(back) == dataclasses.asdict(result)
    assert back.outputs[0].grid.data == grid.data


async def test_a_worker_given_a_run_with_a_field_it_does_not_know_runs_nothing_and_says_why(
    valkey: ValkeyServer, tiny_engine: DiffusionEngine, caplog: pytest.LogCaptureFixture
) -> None:
    keys = StreamKeys()
    worker = ThreadWorker(valkey.url, tiny_engine, "w1").start()
    client = valkey.client()
    try:
        boot = worker.runner.boot_id.encode()
        known = dataclasses.replace(every_field_set(), batch_id="known")
        good = Run("good", (RunJob(work_order(1, 1, TINY_RECIPE).request, attempt=1, token="t-1"),), 0.7, 0.0)
        unknown = with_spec_changed(known, lambda spec: spec.update(sharpness=0.5))

        def results() -> dict[str, Result]:
            messages = [decode(fields[MESSAGE_FIELD]) for _, fields in client.xrange(keys.results)]
            return {m.batch_id: m for m in messages if isinstance(m, Result)}

        def runs_taken() -> list[int]:
            messages = [decode(fields[MESSAGE_FIELD]) for _, fields in client.xrange(keys.results)]
            return [m.received for m in messages if isinstance(m, Ready)]

        # The worker clears its inbox as it starts (what it holds was meant for an earlier life), so Runs are
        # sent once it has announced itself, as the bot sends them.
        await eventually(lambda: bool(runs_taken()), "the worker's first Ready")
        client.xadd(keys.inbox("w1"), {MESSAGE_FIELD: unknown, BOOT_FIELD: boot})
        client.xadd(keys.inbox("w1"), {MESSAGE_FIELD: encode(good), BOOT_FIELD: boot})

        await eventually(lambda: "good" in results(), "the run after it was answered")
        await eventually(lambda: 1 in runs_taken(), "a Ready after the run")
        assert "known" not in results()  # read before "good", and neither run nor answered
        assert max(runs_taken()) == 1  # the worker took one Run: the one it could read
        assert [message for message in refusals(caplog) if "unknown field `sharpness`" in message] == [
            "Refused a Run from the bot that this worker cannot read (Object contains unknown field `sharpness` - at "
            f"`$.jobs[0].request.spec`), although both speak worker protocol {PROTOCOL_VERSION}; {SAME_VERSION}"
        ]
    finally:
        client.close()
        worker.stop()


# -- two processes built from different definitions -----------------------------------------------


def version_sentences(ours: str, theirs: str, worker_id: str) -> tuple[str, str]:
    """What the bot's log and the worker's log say when they refuse each other."""
    return (
        f"Refused worker {worker_id}: it speaks worker protocol {theirs} and this bot speaks {ours}; {SAME_VERSION}",
        f"Refused the bot: it speaks worker protocol {ours} and this worker speaks {theirs}; {SAME_VERSION}",
    )


async def test_a_worker_process_with_one_request_field_more_and_the_bot_refuse_each_other_and_no_job_runs(
    store: Store[Recipe],
    other_fields: str,
    model_cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    theirs = version_in_a_process(other_fields)
    monkeypatch.setenv("PYTHONPATH", other_fields)  # read by the worker child (and its own children) only
    config = WorkerConfig(
        worker_id="local-0",
        device="cpu",
        cache_dir=model_cache_dir,
        models=(TINY_MODEL_ID,),
        max_batch_images=8,
        heartbeat_s=0.5,
        classifier=NoNsfw(),
    )
    transport = ProcessTransport([config])
    dispatcher = Dispatcher(transport, JobAttempts(store), preview_interval_s=0.0)
    await dispatcher.start()
    job = await store.admit_job(a_new_job(**dataclasses.asdict(TINY_RECIPE)), limit=None)
    recorder = Recorder()
    try:
        dispatcher.submit(work_order(job.id, job.user_id, job.recipe), recorder)
        (pid,) = transport.pids().values()

        def child_exited() -> bool:
            return pid not in {child.pid for child in multiprocessing.active_children()}

        await eventually(child_exited, "the refused worker exited")
        await asyncio.sleep(1.0)  # time enough for a restart, which must not come
        assert transport.pids() == {"local-0": pid}
    finally:
        left = await dispatcher.stop(timeout_s=WAIT_S)

    bot_says, worker_says = version_sentences(PROTOCOL_VERSION, theirs, "local-0")
    assert refusals(caplog) == [bot_says]
    assert worker_says in capfd.readouterr().err
    assert not recorder.of(Started)
    assert [order.job_id for order in left] == [job.id]  # handed back unstarted
    record = await store.get_job(job.id)
    assert record is not None and (record.status, record.attempt) == ("queued", 0)


async def test_python_m_bot_worker_with_one_request_field_more_and_the_bot_refuse_each_other_and_no_job_runs(
    store: Store[Recipe], valkey: ValkeyServer, other_fields: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = version_in_a_process(other_fields)
    environment = {
        **os.environ,
        "REDIS_URL": valkey.url,
        "SD_MODEL": TINY_MODEL_ID,
        "DEVICE": "cpu",
        "WORKER_ID": "elsewhere-1",
        "MODEL_CACHE_DIR": str(tmp_path / "models"),
        "PYTHONPATH": other_fields,
    }
    worker_log = tmp_path / "worker.log"
    bot_says, worker_says = version_sentences(PROTOCOL_VERSION, theirs, "elsewhere-1")
    dispatcher = Dispatcher(StreamsTransport(valkey.url, block_s=0.2), JobAttempts(store), preview_interval_s=0.0)
    await dispatcher.start()
    job = await store.admit_job(a_new_job(**dataclasses.asdict(TINY_RECIPE)), limit=None)
    recorder = Recorder()
    dispatcher.submit(work_order(job.id, job.user_id, job.recipe), recorder)
    with worker_log.open("wb") as log_file:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "worker", env=environment, cwd=tmp_path, stderr=log_file
        )
    try:
        await eventually(lambda: worker_says in worker_log.read_text(errors="replace"), "the worker said why")
        await asyncio.sleep(1.0)  # a few more heartbeats, each refused again, without a word more
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), WAIT_S) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await asyncio.wait_for(worker.wait(), 10)
        left = await dispatcher.stop(timeout_s=WAIT_S)

    assert refusals(caplog) == [bot_says]
    assert worker_log.read_text(errors="replace").count("Refused") == 1
    assert not recorder.of(Started)
    assert [order.job_id for order in left] == [job.id]
    record = await store.get_job(job.id)
    assert record is not None and (record.status, record.attempt) == ("queued", 0)
