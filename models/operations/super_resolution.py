"""Super-resolution: each source enlarged by an upscaler net (Real-ESRGAN, SwinIR), with no diffusion.

The net is the ``UPSCALER`` component that ``spec.model`` names (``models.components``): RGB in [0, 1] as
(N, 3, H, W) in, (N, 3, sH, sW) out. Sources of one size go through it together, on the net's own device and
dtype. Where its result is not the spec's size, it is resized to it (Lanczos): a x4 net serves a x2 upscale by
enlarging, then reducing, as AUTOMATIC1111's upscalers do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from models.components import ComponentKind
from models.operations.base import ComponentOperation, TaskOutputs, check_sources
from models.types import BatchSpec, ImageTask


def run(net: object, spec: BatchSpec, tasks: Sequence[ImageTask]) -> TaskOutputs:
    """Each task's source through ``net``, at the spec's size, in task order."""
    rows_by_size: dict[tuple[int, int], list[int]] = {}
    for row, task in enumerate(tasks):
        rows_by_size.setdefault(_source(task).size, []).append(row)
    enlarged: dict[int, Image.Image] = {}
    for rows in rows_by_size.values():
        images = _enlarged(net, [_source(tasks[row]) for row in rows])
        enlarged.update(zip(rows, images, strict=True))
    size = (spec.width, spec.height)
    return TaskOutputs(
        images=tuple(
            image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
            for image in (enlarged[row] for row in range(len(tasks)))
        )
    )


def _enlarged(net: object, sources: Sequence[Image.Image]) -> list[Image.Image]:
    """One forward pass of ``net`` over ``sources`` (all of one size)."""
    import torch

    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"An upscaler component must be a torch.nn.Module, not {type(net).__name__}")
    weight = next(net.parameters(), None)
    device = weight.device if weight is not None else torch.device("cpu")
    dtype = weight.dtype if weight is not None else torch.float32
    pixels = torch.from_numpy(np.stack([np.asarray(source, dtype=np.float32) for source in sources]))
    batch = (pixels / 255.0).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
    result = net(batch)
    out = result.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(image), "RGB") for image in out]


def _source(task: ImageTask) -> Image.Image:
    assert task.init_image is not None  # check_sources made sure
    return task.init_image.convert("RGB")


OPERATION = ComponentOperation(
    name="super_resolution",
    kind=ComponentKind.UPSCALER,
    check=check_sources,
    run=run,
)
