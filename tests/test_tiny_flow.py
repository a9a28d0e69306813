"""The tiny FLUX.2 [klein] and Z-Image pipelines (issue 23): built here, loaded through ``from_pretrained``
as a download is, and run at 64 px through txt2img, img2img, inpainting and a LoRA."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from models.tiny_flow import (
    TINY_FLOW_MODELS,
    TINY_KLEIN_MODEL_ID,
    TINY_ZIMAGE_MODEL_ID,
    ensure_tiny_flow_model,
    write_tiny_flow_loras,
)

PROMPT = "a red fox in the snow"
SIDE = 64


@dataclass(frozen=True, slots=True)
class Family:
    """What a test needs to know of a family: its pipelines and the arguments its calls take."""

    model_id: str
    pipeline: str
    img2img: str
    inpaint: str
    text_encoder: str
    # Arguments of a plain call as the published model is used: klein 4B is step-distilled (guidance
    # is ignored), Z-Image-Turbo runs without classifier-free guidance (guidance 0).
    call: dict[str, Any] = field(default_factory=dict)
    img2img_call: dict[str, Any] = field(default_factory=dict)


FAMILIES = {
    TINY_KLEIN_MODEL_ID: Family(
        TINY_KLEIN_MODEL_ID,
        pipeline="Flux2KleinPipeline",
        # klein edits with the same pipeline: the picture goes in as a reference (``image=``), not as noised latents.
        img2img="Flux2KleinPipeline",
        inpaint="Flux2KleinInpaintPipeline",
        text_encoder="Qwen3ForCausalLM",
        call={"guidance_scale": 1.0},
    ),
    TINY_ZIMAGE_MODEL_ID: Family(
        TINY_ZIMAGE_MODEL_ID,
        pipeline="ZImagePipeline",
        img2img="ZImageImg2ImgPipeline",
        inpaint="ZImageInpaintPipeline",
        text_encoder="Qwen3Model",
        call={"guidance_scale": 0.0},
        img2img_call={"strength": 0.6},
    ),
}


def pipeline_class(name: str) -> Any:
    import diffusers

    return getattr(diffusers, name)


def from_pretrained(family: Family, folder: Path, **options: Any) -> Any:
    pipeline = pipeline_class(family.pipeline).from_pretrained(folder, **options)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def draw(pipeline: Any, family: Family, seed: int, **arguments: Any) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    call = {"prompt": PROMPT, "height": SIDE, "width": SIDE, "num_inference_steps": 2, **family.call, **arguments}
    image = pipeline(generator=generator, **call).images[0]
    assert image.size == (SIDE, SIDE)
    return np.asarray(image)


def red_square() -> Image.Image:
    return Image.new("RGB", (SIDE, SIDE), (200, 30, 30))


def centre_mask() -> Image.Image:
    mask = Image.new("L", (SIDE, SIDE), 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread() -> Iterator[None]:
    """These models' tensors are a few kilobytes: a second thread buys nothing, and on a busy 2-core
    machine each of klein's thousand small ops then waits for it (a 0.1 s call took 4 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def flow_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flow-models")


@pytest.fixture(scope="session")
def flow_folders(flow_cache: Path) -> dict[str, Path]:
    """Each family built once per session into a model cache, as the engine will ask for it."""
    return {model_id: ensure_tiny_flow_model(model_id, flow_cache) for model_id in TINY_FLOW_MODELS}


@pytest.fixture(scope="session")
def flow_pipelines(flow_folders: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Each family loaded once through ``from_pretrained``; tests that change a pipeline load their own."""
    yield {model_id: from_pretrained(FAMILIES[model_id], folder) for model_id, folder in flow_folders.items()}


@pytest.mark.parametrize("model_id", list(FAMILIES))
def test_a_tiny_flow_model_draws_a_seeded_64_px_image_through_from_pretrained(
    flow_pipelines: dict[str, Any], model_id: str
) -> None:
    family, pipeline = FAMILIES[model_id], flow_pipelines[model_id]
    assert type(pipeline).__name__ == family.pipeline
    assert type(pipeline.text_encoder).__name__ == family.text_encoder

    first = draw(pipeline, family, seed=7)
    again = draw(pipeline, family, seed=7)
    other = draw(pipeline, family, seed=8)

    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5  # noise, but seeded noise
    assert first.std() > 5  # a picture, not a flat colour


@pytest.mark.parametrize("model_id", list(FAMILIES))
def test_a_build_writes_every_component_and_the_same_bytes_each_time(
    flow_folders: dict[str, Path], tmp_path: Path, model_id: str
) -> None:
    import json

    recipe = TINY_FLOW_MODELS[model_id]
    folder = flow_folders[model_id]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == recipe.pipeline_class == FAMILIES[model_id].pipeline
    assert {"scheduler", "vae", "text_encoder", "tokenizer", "transformer"} <= set(index)
    for component in ("vae", "text_encoder", "transformer"):
        assert list((folder / component).glob("*.safetensors")), component
    assert (folder / "tokenizer" / "chat_template.jinja").is_file()

    # Whatever the process's RNG holds, a second build is the same model, byte for byte.
    torch.manual_seed(12345)
    rebuilt = recipe.build(tmp_path / "again")
    assert digests(rebuilt) == digests(folder)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_tokenizer_renders_a_prompt_as_qwen3_does_for_each_pipeline(flow_pipelines: dict[str, Any]) -> None:
    tokenizer = flow_pipelines[TINY_KLEIN_MODEL_ID].tokenizer
    turn = [{"role": "user", "content": PROMPT}]

    # klein asks for no thinking: Qwen3 then closes an empty think block; Z-Image leaves the turn open.
    klein = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    zimage = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert klein == f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert zimage == f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"

    ids = tokenizer(klein)["input_ids"]
    for control in ("<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert tokenizer.convert_tokens_to_ids(control) in ids, control
    assert tokenizer.decode(ids) == klein
    # Padding to the pipelines' 512 tokens uses Qwen's pad token, masked out.
    padded = tokenizer(klein, padding="max_length", max_length=512)
    assert padded["input_ids"][-1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert sum(padded["attention_mask"]) == len(ids)
    # Any text spells, in any script.
    assert tokenizer.decode(tokenizer("狐狸 — Füchse")["input_ids"]) == "狐狸 — Füchse"


@pytest.mark.parametrize("model_id", list(FAMILIES))
def test_img2img_and_inpainting_pipelines_come_from_the_loaded_one(
    flow_pipelines: dict[str, Any], model_id: str
) -> None:
    family, pipeline = FAMILIES[model_id], flow_pipelines[model_id]
    txt2img = draw(pipeline, family, seed=3)

    img2img = pipeline_class(family.img2img).from_pipe(pipeline)
    img2img.set_progress_bar_config(disable=True)
    edited = draw(img2img, family, seed=3, image=red_square(), **family.img2img_call)
    assert not np.array_equal(edited, txt2img)

    inpaint = pipeline_class(family.inpaint).from_pipe(pipeline)
    inpaint.set_progress_bar_config(disable=True)
    assert inpaint.transformer is pipeline.transformer  # the same weights, not a copy
    filled = draw(inpaint, family, seed=3, image=red_square(), mask_image=centre_mask(), strength=1.0)
    assert not np.array_equal(filled, txt2img)


def test_klein_ignores_guidance_as_the_distilled_model_does_and_guides_when_told_it_is_not(
    flow_folders: dict[str, Path], flow_pipelines: dict[str, Any]
) -> None:
    family, distilled = FAMILIES[TINY_KLEIN_MODEL_ID], flow_pipelines[TINY_KLEIN_MODEL_ID]
    assert distilled.config.is_distilled
    unguided = draw(distilled, family, seed=5, guidance_scale=1.0)
    assert np.array_equal(draw(distilled, family, seed=5, guidance_scale=4.0), unguided)

    # The Base variants' behaviour (is_distilled false): an unconditional pass on "" and the mix of both.
    base = from_pretrained(family, flow_folders[TINY_KLEIN_MODEL_ID], is_distilled=False)
    assert np.array_equal(draw(base, family, seed=5, guidance_scale=1.0), unguided)
    assert not np.array_equal(draw(base, family, seed=5, guidance_scale=4.0), unguided)


def test_zimage_guides_with_a_negative_prompt_only_above_guidance_zero(flow_pipelines: dict[str, Any]) -> None:
    family, pipeline = FAMILIES[TINY_ZIMAGE_MODEL_ID], flow_pipelines[TINY_ZIMAGE_MODEL_ID]
    turbo = draw(pipeline, family, seed=5, guidance_scale=0.0)
    assert np.array_equal(draw(pipeline, family, seed=5, guidance_scale=0.0, negative_prompt="blurry"), turbo)

    guided = draw(pipeline, family, seed=5, guidance_scale=2.0, negative_prompt="blurry")
    assert not np.array_equal(guided, turbo)
    assert not np.array_equal(draw(pipeline, family, seed=5, guidance_scale=2.0, negative_prompt="grainy"), guided)


LORA_PREFIX = "transformer."


@pytest.mark.parametrize("model_id", list(FAMILIES))
def test_a_tiny_lora_changes_the_image_and_at_weight_zero_gives_it_back_exactly(
    flow_folders: dict[str, Path], tmp_path: Path, model_id: str
) -> None:
    family, folder = FAMILIES[model_id], flow_folders[model_id]
    (lora,) = write_tiny_flow_loras(folder, tmp_path, ["style.safetensors"])
    with safe_open(str(lora), "pt") as weights:
        keys = list(weights.keys())
    # diffusers' own layout for these families: transformer.<module>.lora_A.weight / lora_B.weight.
    assert keys and all(key.startswith(LORA_PREFIX) for key in keys)
    assert {key.rsplit(".", 2)[-2] for key in keys} == {"lora_A", "lora_B"}

    pipeline = from_pretrained(family, folder)  # its own: adapters change the pipeline they load into
    plain = draw(pipeline, family, seed=9)
    pipeline.load_lora_weights(str(lora), adapter_name="style")
    styled = draw(pipeline, family, seed=9)
    assert np.abs(styled.astype(int) - plain.astype(int)).mean() > 1

    pipeline.set_adapters(["style"], [0.0])
    assert np.array_equal(draw(pipeline, family, seed=9), plain)
    pipeline.set_adapters(["style"], [1.0])
    assert np.array_equal(draw(pipeline, family, seed=9), styled)
    pipeline.delete_adapters("style")
    assert np.array_equal(draw(pipeline, family, seed=9), plain)


def test_the_published_transformers_build_on_the_meta_device_with_every_knob_the_tiny_ones_set() -> None:
    from bench._architectures import KLEIN_4B_TRANSFORMER, ZIMAGE_TURBO_TRANSFORMER, flow_denoiser, parameters
    from models.tiny_flow import KLEIN_TRANSFORMER_CONFIG, ZIMAGE_TRANSFORMER_CONFIG

    klein, zimage = flow_denoiser("klein"), flow_denoiser("zimage")
    assert next(klein.parameters()).device.type == "meta"
    # FLUX.2 [klein] "4B" and Z-Image's "6B" are their transformers' sizes.
    assert 3.85e9 < parameters(klein) < 3.9e9
    assert 6.1e9 < parameters(zimage) < 6.2e9
    # The tiny models differ from these in sizes only: each sets every field the published ones do.
    assert set(KLEIN_4B_TRANSFORMER) == {*KLEIN_TRANSFORMER_CONFIG, "out_channels"}
    assert set(ZIMAGE_TURBO_TRANSFORMER) == set(ZIMAGE_TRANSFORMER_CONFIG)
    assert KLEIN_4B_TRANSFORMER["joint_attention_dim"] == 3 * 2560  # three hidden states of Qwen3-4B

    # Off the meta device the weights are drawn: finite, norms at one.
    smoke = flow_denoiser("zimage", "smoke", device="cpu", dtype=torch.float32)
    assert all(torch.isfinite(parameter).all() for parameter in smoke.parameters())
    assert torch.equal(smoke.layers[0].attention_norm1.weight, torch.ones_like(smoke.layers[0].attention_norm1.weight))
