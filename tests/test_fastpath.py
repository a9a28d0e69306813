"""The compiled fast path, as far as a CPU can show it: buckets, padding, routing, fallback, the cache's path.

A stand-in "compiler" records each call the compiled form gets and runs the eager UNet,
so the tests see which calls a compiled graph would have served, and at what batch size.
torch.compile itself on CUDA is measured by ``bench/bench_gpu.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from bot.settings import Settings, SettingsError
from models.engine import DiffusionEngine, EngineConfig
from models.fastpath import Bucket, BucketState, buckets_for, compile_cache_dir, padded
from models.sizes import aspect_sizes
from models.tiny import TINY_MODEL_ID
from models.types import GenerationBatch, ImageTask
from tests.recipes import a_spec

WAIT_S = 300.0  # three two-step warm-ups of a 64 px tiny model; generous for a busy CI machine


class RecordingCompiler:
    """Compiles nothing: the "compiled" form notes the batch rows of each call and runs the eager UNet."""

    def __init__(self, fail_rows: int | None = None) -> None:
        self.rows: list[int] = []
        self.threads: set[str] = set()
        self._fail_rows = fail_rows

    def __call__(self, module: torch.nn.Module) -> Callable[..., Any]:
        def compiled(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if sample.shape[0] == self._fail_rows:
                raise RuntimeError(f"inductor could not compile batch {self._fail_rows}")
            self.rows.append(int(sample.shape[0]))
            self.threads.add(threading.current_thread().name)
            return module(sample, *args, **kwargs)

        return compiled


def refusing_compiler(module: torch.nn.Module) -> Callable[..., Any]:
    raise RuntimeError("no C++ compiler found")


@pytest.fixture
def engine_with(model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DiffusionEngine]]:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    engines: list[DiffusionEngine] = []

    def make(compiler: Callable[..., Any], **options: Any) -> DiffusionEngine:
        config = EngineConfig(
            device="cpu", cache_dir=model_cache_dir, compile="on", max_batch_images=4, compiler=compiler, **options
        )
        engine = DiffusionEngine(config)
        engine.load(TINY_MODEL_ID)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        if (fast := engine.fast_path()) is not None:
            fast.stop()
            fast.wait(WAIT_S)


def txt2img(count: int, width: int = 64, height: int = 64) -> GenerationBatch:
    spec = a_spec(width=width, height=height, steps=3)
    return GenerationBatch(spec, tuple(ImageTask(f"a lighthouse, take {n}", "fog", 500 + n) for n in range(count)))


def compiled_and_settled(engine: DiffusionEngine) -> dict[Bucket, BucketState]:
    fast = engine.fast_path()
    assert fast is not None
    assert fast.wait(WAIT_S), "the buckets never finished compiling"
    return fast.states()


def test_buckets_compile_the_default_size_first_at_four_images_and_stop_at_the_batch_bound() -> None:
    sizes = [(512, 512), (624, 416), (512, 512)]
    assert buckets_for(sizes, 8) == (
        Bucket(4, 512, 512),
        Bucket(8, 512, 512),
        Bucket(1, 512, 512),
        Bucket(2, 512, 512),
        Bucket(4, 624, 416),
        Bucket(8, 624, 416),
        Bucket(1, 624, 416),
        Bucket(2, 624, 416),
    )
    assert [bucket.images for bucket in buckets_for([(64, 64)], 3)] == [1, 2]


def test_padding_repeats_the_last_task_and_refuses_to_shrink() -> None:
    tasks = tuple(ImageTask(f"p{n}", "", n) for n in range(3))
    assert [task.seed for task in padded(tasks, 4)] == [0, 1, 2, 2]
    assert padded(tasks, 3) == tasks
    with pytest.raises(ValueError):
        padded(tasks, 2)


def test_the_bot_compiles_a_bucket_for_every_aspect_preset_of_the_model(tiny_engine: DiffusionEngine) -> None:
    preset = tiny_engine.load(TINY_MODEL_ID)
    sizes = aspect_sizes(preset)
    assert sizes[0] == (preset.width, preset.height)
    assert len(set(sizes)) == 5
    assert all(width % 8 == 0 and height % 8 == 0 for width, height in sizes)


def max_difference(first: Image.Image, second: Image.Image) -> int:
    return int(np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).max())


def test_a_padded_batch_gives_each_real_image_the_pixels_it_has_unpadded(
    engine_with: Callable[..., DiffusionEngine], tiny_engine: DiffusionEngine
) -> None:
    compiler = RecordingCompiler()
    engine = engine_with(compiler)
    states = compiled_and_settled(engine)
    assert set(states.values()) == {BucketState.READY}
    assert compiler.threads == {"latentcord-compile"}  # warm-ups ran beside the GPU thread, not in it
    compiler.rows.clear()

    batch = txt2img(3)
    fast = engine.run(batch)
    eager = tiny_engine.run(batch)  # compiling off: three rows, no padding

    assert compiler.rows == [8, 8, 8]  # 3 images padded to the 4-image bucket, twice for guidance, 3 steps
    assert len(fast.images) == 3 and fast.seeds == (500, 501, 502)
    # The same pixels up to float rounding, as an image alone or in any batch (kernels sum in an
    # order that depends on the batch size): a different seed is far off.
    for padded_image, plain_image in zip(fast.images, eager.images, strict=True):
        assert padded_image.size == (64, 64)
        assert max_difference(padded_image, plain_image) <= 2
    assert max_difference(fast.images[0], eager.images[1]) > 10


def test_a_call_no_bucket_was_compiled_for_runs_eager_and_compiles_nothing_in_the_gpu_thread(
    engine_with: Callable[..., DiffusionEngine],
) -> None:
    compiler = RecordingCompiler()
    engine = engine_with(compiler)
    compiled_and_settled(engine)
    compiler.rows.clear()

    output = engine.run(txt2img(1, width=96, height=64))  # a size with no bucket

    assert [image.size for image in output.images] == [(96, 64)]
    assert compiler.rows == []


def test_a_bucket_that_fails_to_compile_stays_eager_with_one_log_line_and_the_rest_serve(
    engine_with: Callable[..., DiffusionEngine], caplog: pytest.LogCaptureFixture
) -> None:
    compiler = RecordingCompiler(fail_rows=4)  # the 2-image bucket: 4 rows with guidance
    with caplog.at_level(logging.WARNING, logger="models.fastpath"):
        engine = engine_with(compiler)
        states = compiled_and_settled(engine)
    assert states == {
        Bucket(4, 64, 64): BucketState.READY,
        Bucket(1, 64, 64): BucketState.READY,
        Bucket(2, 64, 64): BucketState.EAGER,
    }
    failures = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(failures) == 1 and "2 x 64x64" in failures[0] and "stays eager" in failures[0]
    compiler.rows.clear()

    two = engine.run(txt2img(2))  # padded to the ready 4-image bucket rather than run eager
    assert len(two.images) == 2 and compiler.rows == [8, 8, 8]


def test_a_model_that_cannot_compile_at_all_serves_eager(
    engine_with: Callable[..., DiffusionEngine], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="models.fastpath"):
        engine = engine_with(refusing_compiler)
    assert engine.fast_path() is None
    assert any("cannot be compiled here" in record.getMessage() for record in caplog.records)
    assert [image.size for image in engine.run(txt2img(2)).images] == [(64, 64), (64, 64)]


def test_compiled_artefacts_are_cached_under_the_model_cache(
    engine_with: Callable[..., DiffusionEngine], model_cache_dir: Path
) -> None:
    import os

    engine_with(RecordingCompiler())
    root = compile_cache_dir(model_cache_dir)
    assert Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) == root / "inductor"
    assert Path(os.environ["TRITON_CACHE_DIR"]) == root / "triton"


def test_auto_compiles_only_where_cuda_is(model_cache_dir: Path) -> None:
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir, compile="auto"))
    engine.load(TINY_MODEL_ID)
    assert engine.fast_path() is None


def test_sd_compile_is_off_unless_asked_and_auto_or_off() -> None:
    # Off by default: no GPU has measured the compiled path yet (CUDA graphs captured in a thread beside eager).
    assert Settings.from_env(environ={}, env_file=None).sd_compile == "off"
    assert Settings.from_env(environ={"SD_COMPILE": "auto"}, env_file=None).sd_compile == "auto"
    assert Settings.from_env(environ={"SD_COMPILE": "off"}, env_file=None).sd_compile == "off"
    assert (
        Settings.from_env(environ={"SD_COMPILE": "false"}, env_file=None).sd_compile == "off"
    )  # an older .env still starts
    with pytest.raises(SettingsError, match="SD_COMPILE='fast' is invalid: it accepts auto or off"):
        Settings.from_env(environ={"SD_COMPILE": "fast"}, env_file=None)
