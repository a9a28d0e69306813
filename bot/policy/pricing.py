"""What a job costs in credits, and what is given back when images are withheld.

The formula
-----------
One credit is one image at the model's native size (512x512 for SD 1.5,
1024x1024 for SDXL) with the model's default number of steps. Every other job
costs in proportion to images x pixels x steps, rounded up, and at least 1:

    cost = max(1, ceil(images x (width x height) / (native_width x native_height)
                              x steps / default_steps))

So a default ``/imagine`` (4 images, native size, default steps) costs 4 on
every model; an upscale to twice the width and height costs 4 per image (four
times the pixels); a variation at half the width and height costs a quarter;
doubling the steps doubles the cost. The reference is the model's own size and
steps, so the same request costs the same on any model and a member never has
to know which checkpoint is loaded.

Examples (SDXL, native 1024x1024, 30 steps; SD 1.5, native 512x512, 25 steps):

    /imagine on either model, 4 images                       -> 4
    SDXL upscale of one image to 2048x2048, 30 steps         -> 4
    SD 1.5 variation, 1 image at 512x512, 25 steps           -> 1
    SD 1.5, 4 images at 256x256                              -> 1
    SDXL, 4 images at 1024x1024 with 60 steps                -> 8

Refunds for images the NSFW classifier withholds are proportional to the share
of images withheld, rounded down, and the whole cost when all are withheld.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil


def job_cost(
    *,
    images: int,
    width: int,
    height: int,
    steps: int,
    native_width: int,
    native_height: int,
    default_steps: int,
) -> int:
    """Credits for a job; see the module docstring for the formula and why."""
    for name, value in (
        ("images", images),
        ("width", width),
        ("height", height),
        ("steps", steps),
        ("native_width", native_width),
        ("native_height", native_height),
        ("default_steps", default_steps),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}.")
    # Exact arithmetic: 4 images at native size must be 4, never 4.000000001 rounded up to 5.
    share = Fraction(images * width * height * steps, native_width * native_height * default_steps)
    return max(1, ceil(share))


def refund_for_withheld(cost: int, images: int, withheld: int) -> int:
    """Credits to give back when ``withheld`` of a job's ``images`` were not delivered.

    Rounded down, so a member never gets back more than they paid for what they
    did not receive; withholding every image refunds the whole cost.
    """
    if cost < 0:
        raise ValueError("A cost cannot be negative.")
    if images < 1:
        raise ValueError("A job has at least one image.")
    if not 0 <= withheld <= images:
        raise ValueError(f"Between 0 and {images} images can be withheld, not {withheld}.")
    if withheld == images:
        return cost
    return cost * withheld // images
