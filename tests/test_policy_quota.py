"""Job cost and withheld-image refunds."""

from __future__ import annotations

from typing import Any

import pytest

from bot.policy.pricing import job_cost, refund_for_withheld
from models.compute import flops_per_pixel_step

# Jobs on SD_MODEL itself: one credit is one of its images at its native size and default steps
# (tests/test_compute_cost.py prices the other models against it).
SD15: dict[str, Any] = {
    "reference_width": 512,
    "reference_height": 512,
    "reference_steps": 25,
    "flops_per_pixel_step": flops_per_pixel_step("sd1"),
    "reference_flops_per_pixel_step": flops_per_pixel_step("sd1"),
}
SDXL: dict[str, Any] = {
    "reference_width": 1024,
    "reference_height": 1024,
    "reference_steps": 30,
    "flops_per_pixel_step": flops_per_pixel_step("sdxl"),
    "reference_flops_per_pixel_step": flops_per_pixel_step("sdxl"),
}


@pytest.mark.parametrize("model", [SD15, SDXL])
def test_a_default_imagine_costs_four(model: dict[str, Any]) -> None:
    size = model["reference_width"]
    assert job_cost(images=4, width=size, height=size, steps=model["reference_steps"], **model) == 4


def test_an_sdxl_upscale_costs_more_than_a_tiny_variation() -> None:
    upscale = job_cost(images=1, width=2048, height=2048, steps=30, **SDXL)
    tiny_variation = job_cost(images=1, width=512, height=512, steps=25, **SD15)
    assert (upscale, tiny_variation) == (4, 1)


@pytest.mark.parametrize(
    ("images", "width", "height", "steps", "expected"),
    [
        (4, 256, 256, 25, 1),  # a quarter of the pixels: one credit for all four
        (1, 256, 256, 10, 1),  # never free
        (4, 512, 512, 50, 8),  # twice the steps
        (4, 768, 512, 25, 6),  # 1.5x the pixels
        (3, 512, 512, 30, 4),  # 3.6 rounds up
        (1, 1024, 1024, 25, 4),  # a 2x upscale of one image
    ],
)
def test_cost_scales_with_images_pixels_and_steps(
    images: int, width: int, height: int, steps: int, expected: int
) -> None:
    assert job_cost(images=images, width=width, height=height, steps=steps, **SD15) == expected


@pytest.mark.parametrize(
    "field", ["images", "width", "steps", "reference_steps", "flops_per_pixel_step", "reference_flops_per_pixel_step"]
)
def test_cost_rejects_non_positive_inputs(field: str) -> None:
    kwargs = {"images": 4, "width": 512, "height": 512, "steps": 25, **SD15, field: 0}
    with pytest.raises(ValueError, match=field):
        job_cost(**kwargs)


@pytest.mark.parametrize(
    ("cost", "images", "withheld", "expected"),
    [
        (4, 4, 0, 0),
        (4, 4, 1, 1),
        (4, 4, 3, 3),
        (4, 4, 4, 4),
        (1, 4, 3, 0),  # rounded down: three withheld of a one-credit job keep the credit
        (1, 4, 4, 1),  # all withheld: everything back
        (5, 4, 2, 2),
        (16, 4, 1, 4),
    ],
)
def test_refund_for_withheld_is_proportional_and_capped(cost: int, images: int, withheld: int, expected: int) -> None:
    refund = refund_for_withheld(cost, images, withheld)
    assert refund == expected
    assert 0 <= refund <= cost


def test_refund_rejects_more_withheld_than_images() -> None:
    with pytest.raises(ValueError):
        refund_for_withheld(4, 4, 5)
