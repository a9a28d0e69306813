"""What a job costs in credits, and what is given back when images are withheld.

The formula
-----------
One credit is the GPU work of one image on the bot's own model (``SD_MODEL``) at its native size
(512x512 for SD 1.5, 1024x1024 for SDXL) with its default number of steps. A job costs the share of
that work it asks for: images x pixels x steps x what one step of its model's denoiser costs per
pixel (``models.compute``: FLOPs counted once per family), rounded up, and at least 1:

    cost = max(1, ceil(images x (width x height) x steps x flops_per_pixel_step(model)
                       / (reference_width x reference_height x reference_steps
                          x flops_per_pixel_step(SD_MODEL))))

So a default ``/imagine`` (4 images at native size and default steps) on ``SD_MODEL`` costs 4; an
upscale to twice the width and height costs 4 per image (four times the pixels); a variation at
half the width and height costs a quarter; doubling the steps doubles the cost. Another model costs
in proportion to its work, so a member's credits buy the same GPU time whichever model they pick:
with SD 1.5 as ``SD_MODEL``, a default ``/imagine`` on SDXL (four times the pixels, and a UNet that
does 2.1 times the FLOPs per pixel) costs 34, and one on FLUX.2 klein 4B (four times the pixels at
5.4 times the FLOPs per pixel, but 4 steps where SD 1.5 takes 25) costs 14.

Examples, SD_MODEL SD 1.5 (512x512, 25 steps):

    /imagine on SD 1.5, 4 images at 512x512, 25 steps        -> 4
    /imagine on SDXL, 4 images at 1024x1024, 25 steps        -> 34
    /imagine on FLUX.2 klein 4B, 4 at 1024x1024, 4 steps     -> 14
    /imagine on Z-Image-Turbo, 4 at 1024x1024, 8 steps       -> 45
    SD 1.5 variation, 1 image at 512x512, 25 steps           -> 1
    SD 1.5, 4 images at 256x256                              -> 1
    SD 1.5, 4 images at 512x512 with 50 steps                -> 8
    SDXL upscale of one image to 2048x2048, 25 steps         -> 34

and SD_MODEL SDXL (1024x1024, 25 steps): a default ``/imagine`` costs 1 on SD 1.5, 4 on SDXL,
2 on FLUX.2 klein 4B and 6 on Z-Image-Turbo.

Images the model reads
----------------------
FLUX.2 klein reads the images that guide a job (an ``/edit``'s picture, references, a moodboard's
pictures) as tokens beside the ones it draws, at every step: each such image lengthens the
sequence by its own pixels' worth (the pipeline scales one larger than 1024x1024 down to that).
So ``input_pixels``, the sum of those images' pixels, is added to each output image's pixels:

    cost = max(1, ceil(images x (width x height + input_pixels) x steps x ... / ...))

An ``/edit`` of one picture at the output's size therefore costs twice a plain image of that size,
and each reference of that size once more (the transformer's attention grows faster than its
sequence; the linear count is the rule's simplification, and is close while the MLPs dominate).

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
    flops_per_pixel_step: Fraction | int,
    reference_width: int,
    reference_height: int,
    reference_steps: int,
    reference_flops_per_pixel_step: Fraction | int,
    input_pixels: int = 0,
) -> int:
    """Credits for a job; see the module docstring for the formula and why.

    ``reference_*`` describe what one credit buys: one image of ``SD_MODEL`` at its native size and
    default steps, on a denoiser of ``reference_flops_per_pixel_step``. ``input_pixels``: the pixels of the
    images the model reads beside each one it draws (see "Images the model reads").
    """
    if isinstance(input_pixels, bool) or not isinstance(input_pixels, int) or input_pixels < 0:
        raise ValueError(f"input_pixels must be a whole number of at least 0, not {input_pixels!r}.")
    for name, value in (
        ("images", images),
        ("width", width),
        ("height", height),
        ("steps", steps),
        ("reference_width", reference_width),
        ("reference_height", reference_height),
        ("reference_steps", reference_steps),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}.")
    for name, rate in (
        ("flops_per_pixel_step", flops_per_pixel_step),
        ("reference_flops_per_pixel_step", reference_flops_per_pixel_step),
    ):
        if isinstance(rate, bool) or not isinstance(rate, int | Fraction) or rate <= 0:
            raise ValueError(f"{name} must be a positive whole number or fraction, not {rate!r}.")
    # Exact arithmetic: 4 images at native size must be 4, never 4.000000001 rounded up to 5.
    work = images * (width * height + input_pixels) * steps * Fraction(flops_per_pixel_step)
    credit = reference_width * reference_height * reference_steps * Fraction(reference_flops_per_pixel_step)
    return max(1, ceil(work / credit))


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
