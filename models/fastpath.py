"""The compiled fast path: the UNet compiled per bucket in the background, used only where it is ready.

Eager Stable Diffusion on a fast GPU is bound by Python launching a thousand kernels per
UNet call, not by the GPU. Compiled with CUDA graphs on static shapes, each call is one
graph replay. Compiling one shape takes minutes, so:

- the engine serves eager from the first second; a daemon thread compiles one *bucket*
  (1, 2, 4 or 8 images at one size) after another, by running the real pipeline for it
  with the compiled UNet, a couple of steps, latents out;
- ``SwitchingUNet`` stands in for the UNet in every pipeline call and uses the compiled
  form only for an argument signature (shapes, dtypes, which arguments) a finished warm-up
  has run, so no call ever compiles in the GPU thread; anything else (an upscale's size,
  another scheduler's timestep dtype) runs eager;
- the engine pads a batch up to the nearest ready bucket of its size and drops the padding
  rows; each image has its own seeded generator, so the real rows are what they would be
  unpadded;
- a bucket that fails to compile stays eager, with one log line, and the rest go on;
- torch keeps what it compiled under ``MODEL_CACHE_DIR/torch-compile`` (``compile_cache_dir``),
  so the next start finds it there instead of compiling again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import torch

from models.types import ImageTask

log = logging.getLogger(__name__)

#: Image counts a bucket may have, in the order they compile (the common /imagine first).
BUCKET_COUNTS: Final = (4, 8, 1, 2)

Compiler = Callable[[torch.nn.Module], Callable[..., Any]]
WarmUp = Callable[["Bucket"], None]


@dataclass(frozen=True, slots=True, order=True)
class Bucket:
    """One static shape the UNet is compiled for: this many images at this size."""

    images: int
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.images} x {self.width}x{self.height}"


class BucketState(StrEnum):
    WAITING = "waiting"
    COMPILING = "compiling"
    READY = "ready"
    EAGER = "eager"  # it failed to compile; eager serves it


def buckets_for(sizes: Iterable[tuple[int, int]], max_images: int) -> tuple[Bucket, ...]:
    """The buckets to compile, in order: each size (the model's default first) at 4, 8, 1 and 2 images."""
    counts = [count for count in BUCKET_COUNTS if count <= max_images]
    return tuple(Bucket(count, width, height) for width, height in dict.fromkeys(sizes) for count in counts)


def padded(tasks: Sequence[ImageTask], size: int) -> tuple[ImageTask, ...]:
    """``tasks`` and copies of the last one up to ``size`` rows; the copies' images are dropped."""
    if size < len(tasks) or not tasks:
        raise ValueError(f"cannot pad {len(tasks)} tasks to {size}")
    return (*tasks, *(tasks[-1],) * (size - len(tasks)))


def compile_cache_dir(model_cache_dir: Path) -> Path:
    return model_cache_dir / "torch-compile"


def use_compile_cache(model_cache_dir: Path) -> Path:
    """Point inductor's and Triton's on-disk caches under ``model_cache_dir``, unless the operator already has."""
    root = compile_cache_dir(model_cache_dir)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    return root


def default_compiler(module: torch.nn.Module) -> Callable[..., Any]:
    """``torch.compile`` with CUDA graphs on static shapes, room for every bucket's graph."""
    import torch._dynamo

    needed = 64
    for limit in ("recompile_limit", "cache_size_limit"):  # the name changed across torch releases
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), needed))
    return torch.compile(module, mode="reduce-overhead", fullgraph=True, dynamic=False)


def signature(value: Any) -> Hashable:
    """What a compiled graph's guards look at in a call's arguments: tensor shapes and dtypes, structure, constants."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype), value.device.type)
    if value is None or isinstance(value, bool | int | float | str):
        return (type(value).__name__, value)
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(key), signature(item)) for key, item in value.items())))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(signature(item) for item in value))
    return ("object", type(value).__qualname__)


class SwitchingUNet(torch.nn.Module):
    """Stands in for the UNet in a pipeline call: compiled for a signature a warm-up ran, eager otherwise.

    Everything but ``forward`` (``config``, ``dtype``, ``add_embedding`` ...) is the eager
    UNet's, so a pipeline cannot tell the difference.
    """

    def __init__(self, eager: torch.nn.Module, compiled: Callable[..., Any]) -> None:
        super().__init__()
        self.eager = eager
        # Kept out of the module tree: the compiled form wraps ``eager`` and owns no weights of its own.
        object.__setattr__(self, "_compiled", compiled)
        self._ready: set[Hashable] = set()
        self._warming = threading.local()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["eager"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        key = signature((args, kwargs))
        if getattr(self._warming, "signatures", None) is not None:
            output = self._compiled(*args, **kwargs)
            self._warming.signatures.add(key)
            return output
        if key in self._ready:
            return self._compiled(*args, **kwargs)
        return self.eager(*args, **kwargs)

    def warming(self) -> _Warming:
        """In the compile thread, for one bucket: calls compile and run compiled; on success they serve."""
        return _Warming(self)


class _Warming:
    def __init__(self, switch: SwitchingUNet) -> None:
        self._switch = switch

    def __enter__(self) -> None:
        self._switch._warming.signatures = set()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        seen: set[Hashable] = self._switch._warming.signatures
        self._switch._warming.signatures = None
        if kind is None:
            self._switch._ready.update(seen)


class FastPath:
    """One resident model's buckets, compiled one after another in a daemon thread."""

    def __init__(self, switch: SwitchingUNet, buckets: Sequence[Bucket], warm_up: WarmUp, model: str) -> None:
        self.switch = switch
        self._buckets = tuple(buckets)
        self._warm_up = warm_up
        self._model = model
        self._states = dict.fromkeys(self._buckets, BucketState.WAITING)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._compile_all, name="latentcord-compile", daemon=True)

    @classmethod
    def start(
        cls, unet: torch.nn.Module, buckets: Sequence[Bucket], warm_up: WarmUp, *, model: str, compiler: Compiler
    ) -> FastPath | None:
        """Compile ``unet`` bucket by bucket in the background; None (all eager, one log line) if it cannot."""
        try:
            switch = SwitchingUNet(unet, compiler(unet))
        except Exception as error:
            log.warning("fast path: %s stays eager, it cannot be compiled here: %s", model, error)
            return None
        fast = cls(switch, buckets, warm_up, model)
        log.info(
            "fast path: compiling %d buckets of %s in the background; serving eager meanwhile", len(buckets), model
        )
        fast._thread.start()
        return fast

    def ready_counts(self, width: int, height: int) -> tuple[int, ...]:
        with self._lock:
            return tuple(
                sorted(
                    bucket.images
                    for bucket, state in self._states.items()
                    if state is BucketState.READY and (bucket.width, bucket.height) == (width, height)
                )
            )

    def rows_for(self, count: int, width: int, height: int) -> int:
        """How many rows a call of ``count`` images at this size runs: the nearest ready bucket, or ``count``."""
        return next((size for size in self.ready_counts(width, height) if size >= count), count)

    def states(self) -> dict[Bucket, BucketState]:
        with self._lock:
            return dict(self._states)

    def wait(self, timeout_s: float) -> bool:
        """True once every bucket is compiled or has fallen back to eager (for tests and benchmarks)."""
        return self._finished.wait(timeout_s)

    def stop(self) -> None:
        """No bucket starts compiling after this; one being compiled finishes in its own time."""
        self._stopping.set()

    def _set(self, bucket: Bucket, state: BucketState) -> None:
        with self._lock:
            self._states[bucket] = state

    def _compile_all(self) -> None:
        started = time.monotonic()
        try:
            for number, bucket in enumerate(self._buckets, start=1):
                if self._stopping.is_set():
                    return
                self._set(bucket, BucketState.COMPILING)
                began = time.monotonic()
                try:
                    with self.switch.warming():
                        self._warm_up(bucket)
                except Exception as error:
                    self._set(bucket, BucketState.EAGER)
                    log.warning("fast path: %s of %s stays eager: %s", bucket, self._model, error)
                    continue
                finally:
                    _release_warm_up_graphs()
                self._set(bucket, BucketState.READY)
                log.info(
                    "fast path: %s of %s compiled in %.0f s (%d/%d)",
                    bucket,
                    self._model,
                    time.monotonic() - began,
                    number,
                    len(self._buckets),
                )
            ready = sum(state is BucketState.READY for state in self.states().values())
            log.info(
                "fast path: %s has %d of %d buckets compiled, after %.0f s",
                self._model,
                ready,
                len(self._buckets),
                time.monotonic() - started,
            )
        finally:
            self._finished.set()


def _release_warm_up_graphs() -> None:
    """CUDA graphs belong to the thread that recorded them: the compile thread's are of no use to serve."""
    if not torch.cuda.is_available():
        return
    try:
        from torch._inductor import cudagraph_trees

        cudagraph_trees.reset_cudagraph_trees()
    except Exception:  # a torch without it has nothing to release
        log.debug("no CUDA graph trees to release", exc_info=True)
