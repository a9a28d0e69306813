"""Credits stay proportional to GPU work across models (issue 23): the FLOPs table and what a job costs by it.

One credit is one image of SD_MODEL at its native size and default steps; a job on another model
costs its share of that work, by the FLOPs per pixel-step ``models.compute`` holds for each family.
"""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from bot.jobs.admission import cost_of
from bot.jobs.recipe import Recipe
from models.compute import STEP_COUNTS, flops_per_pixel_step
from models.families import FAMILIES
from models.presets import declared_preset
from models.tiny import TINY_MODEL_ID
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID
from models.types import ModelFamily, ModelPreset
from tests.recipes import a_recipe

ROOT = Path(__file__).resolve().parent.parent
SD2_SIDES = (512, 768)  # SD 2.x checkpoints come at either


def preset_of(family: ModelFamily, side: int | None = None) -> ModelPreset:
    """A model of ``family`` with its family's defaults, as ``models.presets`` makes one (SD 2.x's side given)."""
    entry = FAMILIES[family]
    side = entry.side or side
    assert side is not None
    return ModelPreset(
        model=f"someone/{family.value}-model",
        family=family.value,
        width=side,
        height=side,
        steps=entry.steps,
        guidance=entry.guidance,
        scheduler=entry.scheduler,
        max_prompt_tokens=entry.max_prompt_tokens,
    )


def default_imagine(preset: ModelPreset) -> Recipe:
    """A default ``/imagine`` on ``preset``'s model: 4 images at its native size and default steps."""
    return a_recipe(model=preset.model, width=preset.width, height=preset.height, steps=preset.steps)


def work_of(preset: ModelPreset) -> Fraction:
    """The FLOPs of one default image of ``preset``'s model: pixels x steps x FLOPs per pixel-step."""
    return preset.width * preset.height * preset.steps * flops_per_pixel_step(preset.family)


SD15, SDXL = preset_of(ModelFamily.SD1), preset_of(ModelFamily.SDXL)
KLEIN, ZIMAGE = preset_of(ModelFamily.KLEIN), preset_of(ModelFamily.ZIMAGE)
EVERY_PRESET = [
    pytest.param(preset_of(family, side), id=f"{family.value}-{side}" if side else family.value)
    for family in ModelFamily
    for side in (SD2_SIDES if FAMILIES[family].side is None else (None,))
]


def test_every_family_has_its_step_counted_at_its_native_size_with_its_rows() -> None:
    assert set(STEP_COUNTS) == {family.value for family in ModelFamily}
    for family in ModelFamily:
        count = STEP_COUNTS[family.value]
        assert count.side == (FAMILIES[family].side or 768)
        # Stable Diffusion runs classifier-free guidance as two rows; klein (distilled) and Z-Image-Turbo
        # (guidance 0) run one.
        assert count.rows == (2 if FAMILIES[family].sd else 1)
        assert flops_per_pixel_step(family.value) == Fraction(count.flops, count.side**2) > 0


def test_an_unknown_family_has_no_price_and_says_so() -> None:
    with pytest.raises(KeyError, match="count_flops"):
        flops_per_pixel_step("sd9")


@pytest.mark.parametrize("sd_model", EVERY_PRESET)
def test_a_default_imagine_on_sd_model_costs_four_whatever_its_family(sd_model: ModelPreset) -> None:
    assert cost_of(default_imagine(sd_model), sd_model, reference=sd_model) == 4


def test_sdxl_against_sd15_costs_by_the_ratio_of_their_flops() -> None:
    # The same steps (25): per image, the ratio of one step's FLOPs at each native size.
    ratio = Fraction(STEP_COUNTS["sdxl"].flops, STEP_COUNTS["sd1"].flops)
    assert work_of(SDXL) / work_of(SD15) == ratio
    assert 8 < ratio < 9  # four times the pixels, 2.1 times the FLOPs per pixel
    assert cost_of(default_imagine(SDXL), SDXL, reference=SD15) == math.ceil(4 * ratio) == 34
    # Ten SDXL images cost what ten times their work on SD 1.5 would, rounded up once.
    ten = a_recipe(model=SDXL.model, width=1024, height=1024, steps=25, seeds=tuple(range(10)))
    assert cost_of(ten, SDXL, reference=SD15) == math.ceil(10 * ratio) == 85


def test_flux2_klein_against_sd15_costs_by_its_flops_in_its_four_steps() -> None:
    ratio = Fraction(4 * STEP_COUNTS["flux2-klein"].flops, 25 * STEP_COUNTS["sd1"].flops)
    assert work_of(KLEIN) / work_of(SD15) == ratio
    assert cost_of(default_imagine(KLEIN), KLEIN, reference=SD15) == math.ceil(4 * ratio) == 14
    # Per step, klein does 21.7 times SD 1.5's work: priced so, at SD 1.5's 25 steps it would cost 87.
    at_25_steps = a_recipe(model=KLEIN.model, width=1024, height=1024, steps=25)
    assert cost_of(at_25_steps, KLEIN, reference=SD15) == 87


@pytest.mark.parametrize(
    ("preset", "on_sd15", "on_sdxl"),
    [
        pytest.param(SD15, 4, 1, id="sd1"),
        pytest.param(preset_of(ModelFamily.SD2, 512), 5, 1, id="sd2-512"),
        pytest.param(preset_of(ModelFamily.SD2, 768), 11, 2, id="sd2-768"),
        pytest.param(SDXL, 34, 4, id="sdxl"),
        pytest.param(KLEIN, 14, 2, id="flux2-klein"),
        pytest.param(ZIMAGE, 45, 6, id="z-image"),
    ],
)
def test_a_default_imagine_costs_what_the_readme_says(preset: ModelPreset, on_sd15: int, on_sdxl: int) -> None:
    assert cost_of(default_imagine(preset), preset, reference=SD15) == on_sd15
    assert cost_of(default_imagine(preset), preset, reference=SDXL) == on_sdxl


def test_the_tiny_families_cost_by_their_flops_against_builtin_tiny() -> None:
    tiny, klein, zimage = (
        declared_preset(model) for model in (TINY_MODEL_ID, TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID)
    )
    assert tiny is not None and klein is not None and zimage is not None
    assert (tiny.family, klein.family, zimage.family) == ("tiny", "tiny-klein", "tiny-zimage")
    assert cost_of(default_imagine(tiny), tiny, reference=tiny) == 4
    for flow in (klein, zimage):
        share = work_of(flow) / work_of(tiny)
        assert cost_of(default_imagine(flow), flow, reference=tiny) == max(1, math.ceil(4 * share))
        # Sixteen images at sixteen times the steps: the ratio shows through the rounding up.
        many = a_recipe(model=flow.model, width=64, height=64, steps=16 * flow.steps, seeds=tuple(range(16)))
        assert cost_of(many, flow, reference=tiny) == math.ceil(16 * 16 * share)
    # At 64 px the prompt's 512 tokens are most of tiny klein's work: 0.9 of builtin:tiny's per image.
    assert cost_of(default_imagine(klein), klein, reference=tiny) == 1
    assert work_of(klein) / work_of(tiny) == Fraction(4 * 101_142_528, 20 * 89_522_176)


def test_the_table_is_read_without_torch() -> None:
    """The bot process prices jobs with it and never imports torch."""
    code = "import sys, models.compute; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_each_image_klein_reads_adds_its_pixels_to_every_image_it_draws() -> None:
    """The README's figures: on SD_MODEL FLUX.2 klein 4B, a default /imagine is 4, an /edit of one 1024x1024
    picture 8, and each 1024x1024 reference 4 more; a small reference adds its own share."""
    plain = default_imagine(KLEIN)
    side = 1024 * 1024
    assert cost_of(plain, KLEIN, reference=KLEIN) == 4
    assert cost_of(plain, KLEIN, reference=KLEIN, input_pixels=side) == 8
    assert cost_of(plain, KLEIN, reference=KLEIN, input_pixels=2 * side) == 12
    assert cost_of(plain, KLEIN, reference=KLEIN, input_pixels=side // 4) == 5
    with pytest.raises(ValueError, match="input_pixels"):
        cost_of(plain, KLEIN, reference=KLEIN, input_pixels=-1)
