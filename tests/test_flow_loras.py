"""LoRAs for FLUX.2 klein and Z-Image (issue 23): told from their headers in each layout the families' diffusers
loaders read, tied to their family, refused for another, and applied by the engine and through the bot.

The files are ``models.tiny_flow.write_tiny_flow_loras``' (diffusers' layout, PEFT on the tiny transformers),
rewritten here key by key into kohya's, ai-toolkit's and PEFT's layouts.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from bot.errors import InvalidRequest
from bot.images.grid import grid_cells
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, Origin
from bot.runtime.core import Core
from db.records import AuditEntry, FineTune
from models.engine import DiffusionEngine, EngineConfig
from models.finetunes import FAMILY_NAMES, FineTuneError, FineTuneKind, check_lora_fits, inspect_fine_tune
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID, ensure_tiny_flow_model, write_tiny_flow_loras
from models.types import BatchSpec, GenerationBatch, ImageTask, ModelFamily, Operation
from tests.helpers import ServiceEvents, pixels, thread_core

FAMILY_OF = {TINY_KLEIN_MODEL_ID: ModelFamily.TINY_KLEIN, TINY_ZIMAGE_MODEL_ID: ModelFamily.TINY_ZIMAGE}
OTHER_MODEL = {TINY_KLEIN_MODEL_ID: TINY_ZIMAGE_MODEL_ID, TINY_ZIMAGE_MODEL_ID: TINY_KLEIN_MODEL_ID}
GUILD, CHANNEL, MEMBER, MODERATOR = 100, 200, 1, 2
Tensors = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def flow_loras(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two LoRAs (seeds 0 and 1) for each tiny flow model, in diffusers' layout, by model id."""
    folder = tmp_path_factory.mktemp("flow-loras")
    loras = {}
    for model in FAMILY_OF:
        stem = model.removeprefix("builtin:").replace("-", "_")
        first, second = write_tiny_flow_loras(
            ensure_tiny_flow_model(model, model_cache_dir),
            folder,
            [f"{stem}_ink.safetensors", f"{stem}_oil.safetensors"],
        )
        loras[model] = (first, second)
    return loras


def saved(tensors: Tensors, path: Path) -> Path:
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return path


def diffusers_module(key: str) -> tuple[str, str]:
    """``transformer.<module>.lora_A.weight`` -> (``<module>``, ``A``)."""
    module, _, rest = key.removeprefix("transformer.").partition(".lora_")
    return module, rest[0]


# -- the layouts, rewritten from diffusers' ----------------------------------------------------------------

#: kohya's (BFL's) names for klein's layers, and the diffusers modules each stands for (fused q/k/v: three).
KLEIN_KOHYA: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "double_blocks": (
        "transformer_blocks",
        {
            "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
            "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
            "img_attn_proj": ("attn.to_out.0",),
            "txt_attn_proj": ("attn.to_add_out",),
        },
    ),
    "single_blocks": ("single_transformer_blocks", {"linear1": ("attn.to_qkv_mlp_proj",), "linear2": ("attn.to_out",)}),
}


def klein_kohya(tensors: Tensors) -> Tensors:
    """kohya's FLUX.2 layout of the same LoRA: a fused q/k/v layer's down weights stacked and its up weights
    block-diagonal (rank 3r, alpha 3r: a scale of one), which diffusers splits back into the three exactly."""
    out: Tensors = {}
    for kohya_blocks, (blocks, layers) in KLEIN_KOHYA.items():
        indices = {int(key.split(".")[2]) for key in tensors if key.startswith(f"transformer.{blocks}.")}
        for index in indices:
            for kohya, modules in layers.items():
                prefix = f"transformer.{blocks}.{index}."
                downs = [tensors[f"{prefix}{module}.lora_A.weight"] for module in modules]
                ups = [tensors[f"{prefix}{module}.lora_B.weight"] for module in modules]
                name = f"lora_unet_{kohya_blocks}_{index}_{kohya}"
                out[f"{name}.lora_down.weight"] = torch.cat(downs)
                out[f"{name}.lora_up.weight"] = torch.block_diag(*ups)
                out[f"{name}.alpha"] = torch.tensor(float(sum(down.shape[0] for down in downs)))
    return out


def klein_ai_toolkit(tensors: Tensors) -> Tensors:
    """ai-toolkit's FLUX.2 layout (``diffusion_model.`` and BFL's block names; a fused q/k/v shares one down
    weight, here q's): another LoRA than the original for q/k/v, but of the same layers."""
    out: Tensors = {}
    for kohya_blocks, (blocks, layers) in KLEIN_KOHYA.items():
        indices = {int(key.split(".")[2]) for key in tensors if key.startswith(f"transformer.{blocks}.")}
        for index in indices:
            for kohya, modules in layers.items():
                prefix = f"transformer.{blocks}.{index}."
                layer = kohya.replace("_attn_", "_attn.") if "attn" in kohya else kohya
                name = f"diffusion_model.{kohya_blocks}.{index}.{layer}"
                out[f"{name}.lora_A.weight"] = tensors[f"{prefix}{modules[0]}.lora_A.weight"]
                out[f"{name}.lora_B.weight"] = torch.cat(
                    [tensors[f"{prefix}{module}.lora_B.weight"] for module in modules]
                )
    return out


def peft_prefixed(tensors: Tensors) -> Tensors:
    """PEFT's own names (``base_model.model.<module>``), which klein's loader reads."""
    return {f"base_model.model.{key.removeprefix('transformer.')}": value for key, value in tensors.items()}


def zimage_kohya(tensors: Tensors) -> Tensors:
    """kohya's Z-Image layout: ``lora_unet_`` and the module's path with underscores, alpha the rank."""
    out: Tensors = {}
    for key, value in tensors.items():
        module, which = diffusers_module(key)
        name = "lora_unet_" + module.replace(".", "_")
        if which == "A":
            out[f"{name}.lora_down.weight"] = value
            out[f"{name}.alpha"] = torch.tensor(float(value.shape[0]))
        else:
            out[f"{name}.lora_up.weight"] = value
    return out


def zimage_ai_toolkit(tensors: Tensors) -> Tensors:
    """ai-toolkit's Z-Image layout: ``diffusion_model.`` before the transformer's own names."""
    return {f"diffusion_model.{key.removeprefix('transformer.')}": value for key, value in tensors.items()}


LAYOUTS: dict[str, dict[str, Callable[[Tensors], Tensors]]] = {
    TINY_KLEIN_MODEL_ID: {"kohya": klein_kohya, "ai-toolkit": klein_ai_toolkit, "peft": peft_prefixed},
    TINY_ZIMAGE_MODEL_ID: {"kohya": zimage_kohya, "ai-toolkit": zimage_ai_toolkit},
}
LAYOUT_CASES = [(model, layout) for model, layouts in LAYOUTS.items() for layout in layouts]


# -- told from the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(FAMILY_OF))
def test_each_tiny_flow_lora_is_told_from_its_header_and_fits_its_family(
    flow_loras: dict[str, tuple[Path, Path]], model: str
) -> None:
    lora, _ = flow_loras[model]
    info = inspect_fine_tune(lora, lora.name)
    assert (info.kind, info.family) == (FineTuneKind.LORA, FAMILY_OF[model].value)
    check_lora_fits(lora, info.family)  # no FineTuneError


def test_an_sd_lora_is_still_told_as_its_sd_family(tmp_path: Path) -> None:
    from bench._architectures import write_tiny_loras

    (lora,) = write_tiny_loras(tmp_path, ["ink.safetensors"])
    assert inspect_fine_tune(lora, "ink.safetensors").family == "tiny"
    with pytest.raises(FineTuneError, match="does not fit tiny \\(FLUX.2 klein\\) models: none of its"):
        check_lora_fits(lora, ModelFamily.TINY_KLEIN.value)


@pytest.mark.parametrize(("model", "layout"), LAYOUT_CASES)
def test_the_same_lora_in_another_layout_is_told_as_the_same_family(
    flow_loras: dict[str, tuple[Path, Path]], tmp_path: Path, model: str, layout: str
) -> None:
    lora, _ = flow_loras[model]
    path = saved(LAYOUTS[model][layout](load_file(str(lora))), tmp_path / f"{layout}.safetensors")
    info = inspect_fine_tune(path, path.name)
    assert (info.kind, info.family) == (FineTuneKind.LORA, FAMILY_OF[model].value)
    check_lora_fits(path, info.family)
    other = FAMILY_OF[OTHER_MODEL[model]]
    with pytest.raises(FineTuneError, match=f"^That LoRA does not fit {re.escape(FAMILY_NAMES[other.value])} models: "):
        check_lora_fits(path, other.value)


@pytest.mark.parametrize("model", list(FAMILY_OF))
def test_a_lora_of_one_tiny_flow_family_is_refused_for_the_other_in_one_sentence(
    flow_loras: dict[str, tuple[Path, Path]], model: str
) -> None:
    lora, _ = flow_loras[model]
    layers = sum(1 for key in load_file(str(lora)) if ".lora_A." in key)
    other = FAMILY_OF[OTHER_MODEL[model]]
    label = "tiny (Z-Image)" if other is ModelFamily.TINY_ZIMAGE else "tiny (FLUX.2 klein)"
    with pytest.raises(FineTuneError) as refused:
        check_lora_fits(lora, other.value)
    assert str(refused.value) == f"That LoRA does not fit {label} models: none of its {layers} layers is one of theirs."


def test_a_lora_of_the_family_s_names_at_another_width_is_for_another_size_of_model(
    flow_loras: dict[str, tuple[Path, Path]],
) -> None:
    """The tiny klein's layers have FLUX.2 klein 4B's names, 32 wide where 4B's are 3072: as a 9B LoRA (4096
    wide) on 4B, diffusers would refuse its shapes, so it is refused when it is added."""
    lora, _ = flow_loras[TINY_KLEIN_MODEL_ID]
    with pytest.raises(FineTuneError) as refused:
        check_lora_fits(lora, ModelFamily.KLEIN.value)
    assert str(refused.value) == (
        "That LoRA is for a FLUX.2 klein model of another size: its layers have the names of FLUX.2 klein 4B's "
        "but not their widths."
    )
    zimage, _ = flow_loras[TINY_ZIMAGE_MODEL_ID]
    with pytest.raises(FineTuneError, match="a Z-Image model of another size: .* of Z-Image-Turbo's but not"):
        check_lora_fits(zimage, ModelFamily.ZIMAGE.value)


def test_a_file_of_no_family_s_layers_is_refused_naming_the_families(tmp_path: Path) -> None:
    path = saved(
        {
            "transformer.nowhere.lora_A.weight": torch.zeros(4, 8),
            "transformer.nowhere.lora_B.weight": torch.zeros(8, 4),
        },
        tmp_path / "nowhere.safetensors",
    )
    with pytest.raises(FineTuneError, match=re.escape("not one for a model of a family this bot runs (SD 1.x, ")):
        inspect_fine_tune(path, path.name)


# -- applied by the engine ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(model_cache_dir: Path) -> Iterator[DiffusionEngine]:
    """One LoRA kept per model, so a second one evicts the first."""
    yield DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir, lora_cache=1))


def draw(
    engine: DiffusionEngine,
    model: str,
    loras: tuple[tuple[str, float], ...] = (),
    operation: Operation = Operation.TXT2IMG,
    source: Image.Image | None = None,
) -> np.ndarray:
    preset = engine.load(model)
    spec = BatchSpec(
        model=model,
        operation=operation,
        width=64,
        height=64,
        steps=2,
        guidance=preset.guidance,
        scheduler=preset.scheduler,
        strength=0.7 if source is not None else 0.0,
        loras=loras,
    )
    return pixels(engine.run(GenerationBatch(spec, (ImageTask("a red fox", "", 7, source),))).images[0])


@pytest.mark.parametrize("model", list(FAMILY_OF))
def test_the_engine_applies_a_flow_lora_at_its_weight_and_switches_it_off(
    engine: DiffusionEngine, flow_loras: dict[str, tuple[Path, Path]], model: str
) -> None:
    lora, _ = flow_loras[model]
    plain = draw(engine, model)
    styled = draw(engine, model, ((str(lora), 1.0),))
    assert np.abs(styled - plain).mean() > 1
    assert np.array_equal(draw(engine, model, ((str(lora), 0.0),)), plain)  # weight 0: exactly the base
    assert not np.array_equal(draw(engine, model, ((str(lora), 0.5),)), styled)
    assert np.array_equal(draw(engine, model), plain)  # the next job without it: switched off
    assert np.array_equal(draw(engine, model, ((str(lora), 1.0),)), styled)  # and back on


@pytest.mark.parametrize("model", list(FAMILY_OF))
def test_a_second_flow_lora_evicts_the_first_and_the_first_comes_back_the_same(
    engine: DiffusionEngine, flow_loras: dict[str, tuple[Path, Path]], model: str
) -> None:
    ink, oil = flow_loras[model]
    inked = draw(engine, model, ((str(ink), 1.0),))
    oiled = draw(engine, model, ((str(oil), 1.0),))
    assert engine.adapters_loaded() == 1
    assert not np.array_equal(inked, oiled)
    assert np.array_equal(draw(engine, model, ((str(ink), 1.0),)), inked)


def test_a_variation_of_a_klein_image_takes_the_lora_too(
    engine: DiffusionEngine, flow_loras: dict[str, tuple[Path, Path]]
) -> None:
    """klein's variation is an inpaint pipeline made with ``from_pipe``: it shares the transformer and its LoRA."""
    lora, _ = flow_loras[TINY_KLEIN_MODEL_ID]
    source = Image.fromarray(draw(engine, TINY_KLEIN_MODEL_ID).astype(np.uint8))
    plain = draw(engine, TINY_KLEIN_MODEL_ID, (), Operation.VARIATION, source)
    styled = draw(engine, TINY_KLEIN_MODEL_ID, ((str(lora), 1.0),), Operation.VARIATION, source)
    assert np.abs(styled - plain).mean() > 1


@pytest.mark.parametrize(("model", "layout"), [(TINY_KLEIN_MODEL_ID, "kohya"), (TINY_ZIMAGE_MODEL_ID, "kohya")])
def test_a_kohya_file_of_the_same_lora_draws_the_same_image(
    engine: DiffusionEngine, flow_loras: dict[str, tuple[Path, Path]], tmp_path: Path, model: str, layout: str
) -> None:
    """diffusers' conversion of kohya's names (klein's fused q/k/v split back) applies the same weights."""
    lora, _ = flow_loras[model]
    kohya = saved(LAYOUTS[model][layout](load_file(str(lora))), tmp_path / f"{layout}_{lora.stem}.safetensors")
    original = draw(engine, model, ((str(lora), 1.0),))
    converted = draw(engine, model, ((str(kohya), 1.0),))
    assert np.abs(converted - original).max() <= 1


def test_a_lora_whose_layers_are_not_the_transformer_s_fails_by_name(
    engine: DiffusionEngine, flow_loras: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """A file kept for another model (or without diffusers' ``transformer.`` prefix, which the loader only warns
    about) fails the job with the LoRA's sentence; the model runs on as it was."""
    from models.finetunes import FineTuneUnusable

    klein, _ = flow_loras[TINY_KLEIN_MODEL_ID]
    bare = saved(
        {key.removeprefix("transformer."): value for key, value in load_file(str(klein)).items()},
        tmp_path / "bare.safetensors",
    )
    plain = draw(engine, TINY_KLEIN_MODEL_ID)
    zimage, _ = flow_loras[TINY_ZIMAGE_MODEL_ID]
    for misfit in (bare, zimage):
        with pytest.raises(FineTuneUnusable) as failed:
            draw(engine, TINY_KLEIN_MODEL_ID, ((str(misfit), 1.0),))
        assert failed.value.sha256 == misfit.stem and "does not fit this model" in str(failed.value)
    assert np.array_equal(draw(engine, TINY_KLEIN_MODEL_ID), plain)


# -- through the bot ---------------------------------------------------------------------------------------


@pytest.fixture
async def core(tmp_path: Path, model_cache_dir: Path) -> AsyncIterator[Core]:
    async with thread_core(tmp_path, model_cache_dir, extra_models=(TINY_KLEIN_MODEL_ID,)) as core:
        yield core


async def test_a_moderator_adds_a_klein_lora_and_a_member_s_job_uses_it(
    core: Core, flow_loras: dict[str, tuple[Path, Path]]
) -> None:
    from bot.jobs.moderation import ModerationService

    moderation = ModerationService(store=core.store, settings=core.settings, worker=core.worker)

    async def add(path: Path, name: str) -> tuple[FineTune, AuditEntry]:
        data = path.read_bytes()

        async def read() -> bytes:
            return data

        return await moderation.add_fine_tune(
            GUILD, "lora", name, filename=path.name, size=len(data), read=read, actor_id=MODERATOR
        )

    # 1. Added: told as tiny-klein from its header; a Z-Image LoRA is refused, this server having no such model.
    added, _ = await add(flow_loras[TINY_KLEIN_MODEL_ID][0], "kleinink")
    assert added.family == ModelFamily.TINY_KLEIN.value
    with pytest.raises(InvalidRequest) as refused:
        await add(flow_loras[TINY_ZIMAGE_MODEL_ID][0], "zimageink")
    assert str(refused.value).startswith("That lora is for tiny (Z-Image) models; this server's models are ")

    # 2. Used: the same seed without and with it.
    async def grid(prompt: str) -> list[np.ndarray]:
        ends = ServiceEvents()
        origin = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)
        options = ImagineOptions(prompt=prompt, model=TINY_KLEIN_MODEL_ID, seed=5, count=1)
        await core.service.imagine(options, origin, ends)
        ended = await ends.end(120)
        assert isinstance(ended, Completed), ended
        with Image.open(io.BytesIO(ended.result.grid.data)) as image:
            return [pixels(cell) for cell in grid_cells(image.convert("RGB"), 1)]

    (plain,) = await grid("a lighthouse")
    (styled,) = await grid("a lighthouse <lora:kleinink:1>")
    assert np.abs(styled - plain).mean() > 1
