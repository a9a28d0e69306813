"""Models beside the resident pipeline: ControlNets, upscalers, captioners, kept loaded in a small cache.

The resident pipeline is one model at a time (``DiffusionEngine.load`` frees the old one first); the
components that come with it are smaller and change per job: a ControlNet given to ``from_pipe``, a
super-resolution net (Real-ESRGAN, SwinIR), a captioner for /describe. The engine owns one
``ComponentCache``: a component is loaded once per (kind, reference) by the loader given for its kind, and at
most ``capacity`` stay resident, the least recently used dropped first (its GPU memory returned to the
driver's cache too), so a worker serving many upscalers never holds them all.

What a component is differs per kind, and a loader returns it ready to run on the engine's device and dtype:

* ``CONTROLNET``: a diffusers ``ControlNetModel``, passed to ``pipeline_for_call(..., components=...)``;
* ``UPSCALER``: a ``torch.nn.Module`` from (N, 3, H, W) RGB in [0, 1] to (N, 3, sH, sW) in [0, 1], the
  convention Real-ESRGAN's and SwinIR's nets share;
* ``CAPTIONER``: a ``Captioner``, any callable from images and a task each to one text each (a transformers
  model with its processor, wrapped by its loader: ``models.captioners``).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from models.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)


class ComponentKind(StrEnum):
    """What a component does, and so which loader loads it and which operations use it."""

    CONTROLNET = "controlnet"
    UPSCALER = "upscaler"
    CAPTIONER = "captioner"


@dataclass(frozen=True, slots=True)
class ComponentKey:
    """One component: its kind and its reference (a path or a repository id, as its loader reads it)."""

    kind: ComponentKind
    reference: str


class ComponentLoader(Protocol):
    """Loads one ``reference`` of a kind onto ``device`` at ``dtype``; raises ``ModelUnavailable`` if it cannot."""

    def __call__(self, reference: str, device: torch.device, dtype: torch.dtype) -> object: ...


class Captioner(Protocol):
    """What a ``CAPTIONER`` component is: one text per (image, task) pair, in order.

    A task is the captioner's own prompt for what to say about its image (Florence-2's ``<CAPTION>``,
    ``<OD>``, ...: ``models.captioners.DESCRIBE_TASKS``).
    """

    def __call__(self, images: Sequence[Image.Image], tasks: Sequence[str]) -> Sequence[str]: ...


class ComponentCache:
    """At most ``capacity`` components loaded at once, by (kind, reference); the least recently used go first.

    Used from the engine's GPU thread; the lock makes a second thread (a preload) wait rather than load the
    same component twice or evict one mid-lookup.
    """

    def __init__(
        self,
        loaders: Mapping[ComponentKind, ComponentLoader],
        capacity: int,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        if capacity < 1:
            raise ModelUnavailable(f"The component cache must hold at least 1 component, not {capacity}.")
        self._loaders = dict(loaders)
        self._capacity = capacity
        self._device = device
        self._dtype = dtype
        self._resident: OrderedDict[ComponentKey, object] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._capacity

    def resident(self) -> tuple[ComponentKey, ...]:
        """The components loaded now, least recently used first."""
        with self._lock:
            return tuple(self._resident)

    def get(self, key: ComponentKey) -> object:
        """The component ``key``, loaded now unless it is resident; it becomes the most recently used."""
        with self._lock:
            component = self._resident.get(key)
            if component is not None:
                self._resident.move_to_end(key)
                return component
            # 1. Refuse a kind this worker cannot load before giving up anything resident.
            loader = self._loaders.get(key.kind)
            if loader is None:
                raise ModelUnavailable(f"This worker has no {key.kind} loader, so it cannot load {key.reference}.")
            # 2. Make room first: the one that leaves and the one that comes need not fit together.
            while len(self._resident) >= self._capacity:
                self._evict_least_recently_used()
            # 3. Load.
            component = loader(key.reference, self._device, self._dtype)
            self._resident[key] = component
            log.info("loaded %s %s on %s", key.kind, key.reference, self._device)
            return component

    def clear(self) -> None:
        """Drop every component (a worker giving its GPU memory back)."""
        with self._lock:
            while self._resident:
                self._evict_least_recently_used()

    def _evict_least_recently_used(self) -> None:
        key, _component = self._resident.popitem(last=False)
        del _component  # the cache held the last reference: collect it now, not at some later pass
        gc.collect()
        if self._device.type == "cuda":
            import torch  # here, so the operations that name a kind import no torch

            torch.cuda.empty_cache()
        log.info("dropped %s %s", key.kind, key.reference)
