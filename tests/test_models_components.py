"""The bounded cache of components beside the resident model (ControlNets, upscalers, captioners)."""

from __future__ import annotations

import weakref

import pytest
import torch

from models.components import ComponentCache, ComponentKey, ComponentKind
from models.errors import ModelUnavailable


def test_the_cache_drops_what_it_evicts_and_refuses_what_it_cannot_load() -> None:
    made: list[torch.nn.Module] = []

    def load(reference: str, device: torch.device, dtype: torch.dtype) -> object:
        made.append(torch.nn.Linear(2, 2).to(device=device, dtype=dtype))
        return made[-1]

    cache = ComponentCache({ComponentKind.UPSCALER: load}, 1, device=torch.device("cpu"), dtype=torch.float32)
    first_key, second_key = ComponentKey(ComponentKind.UPSCALER, "one"), ComponentKey(ComponentKind.UPSCALER, "two")
    first = weakref.ref(cache.get(first_key))
    made.clear()
    assert first() is not None
    assert cache.get(first_key) is first()  # resident: not loaded again
    assert len(made) == 0

    cache.get(second_key)
    assert first() is None  # evicted and gone: the cache held its last reference
    assert cache.resident() == (second_key,)

    with pytest.raises(ModelUnavailable, match="no captioner loader"):
        cache.get(ComponentKey(ComponentKind.CAPTIONER, "any"))
    assert cache.resident() == (second_key,)  # nothing given up for a kind it cannot load
    cache.clear()
    assert cache.resident() == ()
    with pytest.raises(ModelUnavailable, match="at least 1"):
        ComponentCache({}, 0, device=torch.device("cpu"), dtype=torch.float32)
