"""The geometry of an edit: the canvas and the mask that Vary (Region), Zoom Out and Pan hand to inpainting.

An edit is named by a short text kept with the job (``Recipe.mask``): ``region:left-half``,
``zoom:2``, ``zoom:1.5``, ``pan:left`` ... From that and the source image, ``plan_edit``
makes the same canvas and mask every time, so a job rerun after a restart, or re-rolled, draws
on exactly the same geometry.

The mask is 255 where new pixels are drawn and 0 where the source's own pixels come back
unchanged (``models.operations.inpaint`` pastes them back); between the two runs a linear ramp
no wider than ``feather_px``, 1/16 of the canvas's shorter side, so the seam does not show:

- Vary (Region): the region is redrawn; the ramp runs outwards from its edge.
- Zoom Out: the source, shrunk by the factor, sits at the centre of a canvas of its own size;
  the border is drawn, and the ramp runs inwards from the shrunk picture's edge.
- Pan: the canvas grows by half the source's width (left, right) or height (up, down), rounded
  to the model's multiple; the source keeps its pixels and the ramp runs into it from the new strip.

What is to be drawn starts as the nearest kept pixels, stretched outwards, so the model sees
the colours that continue the picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
from PIL import Image

from bot.errors import InvalidRequest

#: A label as the select menu shows it -> the region as fractions of the image (left, top, right, bottom).
REGIONS: Final[Mapping[str, tuple[float, float, float, float]]] = MappingProxyType(
    {
        "Left half": (0.0, 0.0, 0.5, 1.0),
        "Right half": (0.5, 0.0, 1.0, 1.0),
        "Top half": (0.0, 0.0, 1.0, 0.5),
        "Bottom half": (0.0, 0.5, 1.0, 1.0),
        "Centre": (0.25, 0.25, 0.75, 0.75),
        "Top left": (0.0, 0.0, 0.5, 0.5),
        "Top right": (0.5, 0.0, 1.0, 0.5),
        "Bottom left": (0.0, 0.5, 0.5, 1.0),
        "Bottom right": (0.5, 0.5, 1.0, 1.0),
    }
)
ZOOM_FACTORS: Final = ("2", "1.5")
PAN_DIRECTIONS: Final = ("left", "right", "up", "down")
#: Every side of an image is a multiple of this (the VAE's factor); a pan's new strip is rounded to it.
SIZE_MULTIPLE: Final = 8


def region_slug(label: str) -> str:
    return label.lower().replace(" ", "-")


_REGION_BY_SLUG = {region_slug(label): label for label in REGIONS}


def region_mask(label: str) -> str:
    """The ``Recipe.mask`` of Vary (Region) over the region ``label`` names."""
    if label not in REGIONS:
        raise InvalidRequest(f"Unknown region {label!r}: choose one of {', '.join(REGIONS)}.")
    return f"region:{region_slug(label)}"


def zoom_mask(factor: str) -> str:
    if factor not in ZOOM_FACTORS:
        raise InvalidRequest(f"Zoom Out goes {' or '.join(f'{f}x' for f in ZOOM_FACTORS)}, not {factor}x.")
    return f"zoom:{factor}"


def pan_mask(direction: str) -> str:
    if direction not in PAN_DIRECTIONS:
        raise InvalidRequest(f"Pan goes {', '.join(PAN_DIRECTIONS)}, not {direction}.")
    return f"pan:{direction}"


def describe(mask: str) -> str:
    """How the PNG metadata and the messages name an edit: "Vary (Region): left half", "Zoom Out 2x" ..."""
    what, _, argument = mask.partition(":")
    match what:
        case "region":
            return f"Vary (Region): {_REGION_BY_SLUG.get(argument, argument).lower()}"
        case "zoom":
            return f"Zoom Out {argument}x"
        case "pan":
            return f"Pan {argument}"
    return mask


def edit_size(mask: str, width: int, height: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The size of an edit's images, from its source's size; a Pan's new strip is a ``multiple`` of pixels wide
    (the model's: 8 for Stable Diffusion, 16 for the transformer families)."""
    what, argument = _parse(mask)
    if what == "pan":
        if argument in ("left", "right"):
            return width + _strip(width, multiple), height
        return width, height + _strip(height, multiple)
    return width, height


def feather_px(width: int, height: int) -> int:
    """The widest the ramp between kept and drawn pixels may be: 1/16 of the shorter side."""
    return max(1, min(width, height) // 16)


@dataclass(frozen=True, slots=True, eq=False)
class EditPlan:
    """What inpainting starts from: the canvas (RGB) and the mask ("L"), both at the edit's size."""

    canvas: Image.Image
    mask: Image.Image


def plan_edit(mask: str, source: Image.Image, size: tuple[int, int] | None = None) -> EditPlan:
    """The canvas and mask of the edit ``mask`` on ``source``; ``size``: the edit's (its recipe's), else
    ``edit_size``'s for Stable Diffusion."""
    what, argument = _parse(mask)
    pixels = np.asarray(source.convert("RGB"))
    height, width = pixels.shape[:2]
    if what == "region":
        left, top, right, bottom = REGIONS[_REGION_BY_SLUG[argument]]
        box = (round(left * width), round(top * height), round(right * width), round(bottom * height))
        # The region is drawn; the ramp lies outside it.
        return EditPlan(Image.fromarray(pixels, "RGB"), _mask(width, height, drawn=box))
    if what == "zoom":
        factor = float(argument)
        inner_w, inner_h = round(width / factor), round(height / factor)
        shrunk = np.asarray(source.convert("RGB").resize((inner_w, inner_h), Image.Resampling.LANCZOS))
        x0, y0 = (width - inner_w) // 2, (height - inner_h) // 2
        kept = (x0, y0, x0 + inner_w, y0 + inner_h)
        canvas = np.pad(shrunk, ((y0, height - inner_h - y0), (x0, width - inner_w - x0), (0, 0)), mode="edge")
        return EditPlan(Image.fromarray(canvas, "RGB"), _mask(width, height, kept=kept))
    new_w, new_h = size or edit_size(mask, width, height)
    pads = {
        "left": ((0, 0), (new_w - width, 0)),
        "right": ((0, 0), (0, new_w - width)),
        "up": ((new_h - height, 0), (0, 0)),
        "down": ((0, new_h - height), (0, 0)),
    }[argument]
    canvas = np.pad(pixels, (*pads, (0, 0)), mode="edge")
    x0, y0 = pads[1][0], pads[0][0]
    return EditPlan(Image.fromarray(canvas, "RGB"), _mask(new_w, new_h, kept=(x0, y0, x0 + width, y0 + height)))


def _parse(mask: str) -> tuple[str, str]:
    what, _, argument = mask.partition(":")
    valid = {"region": _REGION_BY_SLUG, "zoom": ZOOM_FACTORS, "pan": PAN_DIRECTIONS}
    if what not in valid or argument not in valid[what]:
        raise InvalidRequest(f"{mask!r} is not an edit this bot knows.")
    return what, argument


def _strip(side: int, multiple: int) -> int:
    """Half a side, rounded to the model's multiple (at least one multiple)."""
    return max(multiple, round(side / 2 / multiple) * multiple)


def _mask(
    width: int,
    height: int,
    *,
    drawn: tuple[int, int, int, int] | None = None,
    kept: tuple[int, int, int, int] | None = None,
) -> Image.Image:
    """255 in ``drawn`` (or outside ``kept``), 0 beyond the feather band, a linear ramp across the band."""
    band = feather_px(width, height)
    xs, ys = np.arange(width)[None, :], np.arange(height)[:, None]
    if drawn is not None:
        left, top, right, bottom = drawn
        # How far each pixel lies outside the drawn box (0 inside it).
        outside = np.maximum(np.maximum(left - xs, xs - (right - 1)), np.maximum(top - ys, ys - (bottom - 1)))
        distance = np.maximum(outside, 0)
        weight = np.clip(1.0 - distance / band, 0.0, 1.0)
    else:
        assert kept is not None
        left, top, right, bottom = kept
        # How far each pixel lies inside the kept box, counted from 1 at an edge that borders drawn
        # pixels; an edge on the canvas's own border has nothing drawn beyond it, and no ramp.
        far = np.full((height, width), np.inf)
        sides = (
            (left > 0, np.broadcast_to(xs - left, far.shape)),
            (right < width, np.broadcast_to((right - 1) - xs, far.shape)),
            (top > 0, np.broadcast_to(ys - top, far.shape)),
            (bottom < height, np.broadcast_to((bottom - 1) - ys, far.shape)),
        )
        inside = far
        for borders_drawn, distance in sides:
            if borders_drawn:
                inside = np.minimum(inside, distance + 1)
        within = (xs >= left) & (xs < right) & (ys >= top) & (ys < bottom)
        weight = np.where(within, np.clip(1.0 - inside / band, 0.0, 1.0), 1.0)
    return Image.fromarray(np.rint(weight * 255).astype(np.uint8), "L")
