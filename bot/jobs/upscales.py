"""How an upscale is made: U1-U4 under a grid, Upscale (Subtle) and Upscale (Creative) under an upscale.

With ``UPSCALER`` set (a super-resolution net's .safetensors file, run through spandrel in tiles of
``UPSCALER_TILE``), every upscale enlarges the image with it first, so the result is sharp even where nothing is
redrawn; then:

* **U1-U4** redraw it lightly by img2img at ``UPSCALE_STRENGTH`` (0: the upscaler alone);
* **Upscale (Subtle)** is the upscaler alone: no diffusion, the upscaler working in tiles;
* **Upscale (Creative)** redraws at ``CREATIVE_STRENGTH``, adding detail.

Every upscale goes to 4096 px: past the bot's largest side for one pipeline call (2048 px), the redraw is made
in overlapping tiles and blended (``models.operations.tiled``), as the upscaler is. Without ``UPSCALER``, every
upscale is a resize redrawn by img2img (Subtle at ``UPSCALE_STRENGTH``, as U1-U4; Creative at
``CREATIVE_STRENGTH``): the README says which upscaler to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

#: How much Upscale (Creative) redraws.
CREATIVE_STRENGTH: Final = 0.5
#: The largest side an upscale makes; a 4096 px PNG may pass 10 MB, which the upload's JPEG fallback keeps within
#: Discord's limit.
MAX_UPSCALED_SIDE: Final = 4096
#: An upscale by the net alone: no diffusion steps, a small fixed price.
UPSCALER_ONLY_COST: Final = 1
#: What an upscale of a picture from the command line redraws with, where no prompt is given.
UPSCALE_PROMPT: Final = "highly detailed, sharp focus"
#: An upscale without an upscaler redraws at least this much (UPSCALE_STRENGTH may be 0 only with one).
MIN_REDRAW: Final = 0.05


class UpscaleMode(StrEnum):
    STANDARD = "standard"  # U1-U4
    SUBTLE = "subtle"  # Upscale (Subtle)
    CREATIVE = "creative"  # Upscale (Creative)


@dataclass(frozen=True, slots=True)
class UpscalePlan:
    label: str  # as a refusal names it
    strength: float  # 0: the upscaler alone
    upscaler: str | None
    max_side: int


def upscale_plan(mode: UpscaleMode, upscaler: Path | None, upscale_strength: float) -> UpscalePlan:
    """What an upscale of ``mode`` does with this bot's ``UPSCALER`` and ``UPSCALE_STRENGTH``."""
    net = str(upscaler) if upscaler is not None else None
    light = upscale_strength if net is not None else max(upscale_strength, MIN_REDRAW)
    if mode == UpscaleMode.SUBTLE:
        return UpscalePlan("Upscale (Subtle)", 0.0 if net is not None else light, net, MAX_UPSCALED_SIDE)
    if mode == UpscaleMode.CREATIVE:
        return UpscalePlan("Upscale (Creative)", CREATIVE_STRENGTH, net, MAX_UPSCALED_SIDE)
    return UpscalePlan("upscaling", light, net, MAX_UPSCALED_SIDE)
