"""Loading models: the tiny build, local folders, and every way a reference is refused."""

from __future__ import annotations

import gc
import hashlib
import json
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file

from models import engine as engine_module
from models.engine import DiffusionEngine, EngineConfig
from models.errors import ModelUnavailable, UnsafeCheckpoint
from models.loading import load_pipeline
from models.presets import declared_preset
from models.tiny import TINY_MODEL_ID, ensure_tiny_model

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "models-cache"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network here; make the hub fail fast instead of waiting on timeouts."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def weight_digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.safetensors"))
    }


def test_tiny_model_is_built_once(cache_dir: Path) -> None:
    first = ensure_tiny_model(cache_dir)
    second = ensure_tiny_model(cache_dir)
    assert first == second
    assert (first / "model_index.json").is_file()
    files = {path.suffix for path in first.rglob("*") if path.is_file()}
    assert ".safetensors" in files
    assert not files & {".bin", ".ckpt", ".pt", ".pth"}
    # No build leftovers next to it.
    assert [path.name for path in cache_dir.iterdir()] == [first.name]


def test_racing_builds_agree_and_match_earlier_builds(cache_dir: Path, tmp_path: Path) -> None:
    reference = ensure_tiny_model(cache_dir)
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(ensure_tiny_model(tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert results[0] == results[1]
    assert [path.name for path in tmp_path.iterdir()] == [results[0].name]
    # manual_seed(0): every build has the same weights, byte for byte.
    assert weight_digests(results[0]) == weight_digests(reference)


def test_tiny_folder_loads_like_any_checkpoint(cache_dir: Path) -> None:
    folder = ensure_tiny_model(cache_dir)
    pipeline = load_pipeline(str(folder), device=CPU, dtype=torch.float32, cache_dir=cache_dir)
    assert type(pipeline) is StableDiffusionPipeline
    assert pipeline.safety_checker is None
    assert pipeline.unet.dtype == torch.float32
    images = pipeline(["a cat", "a dog"], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert [image.size for image in images] == [(64, 64), (64, 64)]


def test_pickle_checkpoint_is_refused_unopened(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"")

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must never see a pickle checkpoint")

    monkeypatch.setattr(torch, "load", no_unpickling)
    for name in ("model.ckpt", "model.PT", "weights.pth", "pytorch_model.bin"):
        path = tmp_path / name
        path.write_bytes(b"not really a pickle")
        with pytest.raises(UnsafeCheckpoint) as raised:
            load_pipeline(str(path), device=CPU, dtype=torch.float32, cache_dir=cache_dir)
        assert ".safetensors" in str(raised.value)


def test_missing_path_names_the_path(tmp_path: Path, cache_dir: Path) -> None:
    missing = str(tmp_path / "nowhere" / "model")
    with pytest.raises(ModelUnavailable) as raised:
        load_pipeline(missing, device=CPU, dtype=torch.float32, cache_dir=cache_dir)
    assert str(raised.value) == (
        f"No model named {missing}: give a Hugging Face id, a local diffusers folder or a .safetensors file."
    )


@pytest.mark.usefixtures("offline")
def test_unknown_hub_id_fails_fast(cache_dir: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as raised:
        load_pipeline("latentcord-test/no-such-model", device=CPU, dtype=torch.float32, cache_dir=cache_dir)
    assert time.monotonic() - started < 20
    assert "latentcord-test/no-such-model" in str(raised.value)


@pytest.mark.usefixtures("offline")
def test_single_file_without_cached_config_is_a_clear_error(tmp_path: Path, cache_dir: Path) -> None:
    checkpoint = tmp_path / "my-model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4)}, str(checkpoint))
    with pytest.raises(ModelUnavailable) as raised:
        load_pipeline(str(checkpoint), device=CPU, dtype=torch.float32, cache_dir=cache_dir)
    assert str(checkpoint) in str(raised.value)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(ModelUnavailable, match=r"not a readable \.safetensors file"):
        load_pipeline(str(broken), device=CPU, dtype=torch.float32, cache_dir=cache_dir)


def test_unsupported_pipeline_family_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelUnavailable, match="FluxPipeline"):
        load_pipeline(str(folder), device=CPU, dtype=torch.float32, cache_dir=cache_dir)

    not_a_model = tmp_path / "photos"
    not_a_model.mkdir()
    with pytest.raises(ModelUnavailable, match="not a diffusers model folder"):
        load_pipeline(str(not_a_model), device=CPU, dtype=torch.float32, cache_dir=cache_dir)


def test_engine_keeps_one_pipeline_and_survives_bad_references(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=cache_dir))
    assert engine.load(TINY_MODEL_ID).family == "tiny"
    first = weakref.ref(engine._resident.pipeline)  # type: ignore[union-attr]

    # A reference that can never load is refused without dropping the resident model…
    with pytest.raises(UnsafeCheckpoint):
        engine.load(str(tmp_path / "other.ckpt"))

    def must_not_reload(*args: object, **kwargs: object) -> None:
        raise AssertionError("the resident model was dropped")

    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "load_pipeline", must_not_reload)
        assert engine.load(TINY_MODEL_ID).family == "tiny"

    # …while loading another model frees the first.
    other = engine.load(str(ensure_tiny_model(cache_dir)))
    assert other.family == "sd1"  # the same weights, not named builtin:tiny: judged by shape
    gc.collect()
    assert first() is None


def test_concurrent_first_loads_build_the_pipeline_once(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads released at once on a fresh engine share one load of the real tiny model.

    Every path that loads lazily (``load``, and ``count_prompt_tokens`` before a
    load) is raced; the real loader is wrapped only to count its calls, so a
    second build by a racing thread, which would cost a second copy of the
    weights on a GPU, fails the test.
    """
    ensure_tiny_model(cache_dir)  # the files on disk are not what races here: building the pipeline is
    real_load = engine_module.load_pipeline
    builds: list[str] = []

    def counting_load(model: str, **options: Any) -> Any:
        builds.append(model)
        return real_load(model, **options)

    monkeypatch.setattr(engine_module, "load_pipeline", counting_load)
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=cache_dir))
    racers = 4
    barrier = threading.Barrier(racers)
    families: list[str] = []
    token_counts: list[int] = []
    errors: list[BaseException] = []

    def race(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            if index % 2:
                token_counts.append(engine.count_prompt_tokens(TINY_MODEL_ID, "a cat"))
            else:
                families.append(engine.load(TINY_MODEL_ID).family)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(index,)) for index in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert builds == [TINY_MODEL_ID]
    assert errors == []
    assert families == ["tiny"] * (racers // 2)
    assert len(token_counts) == racers // 2 and len(set(token_counts)) == 1


def test_engine_rejects_unknown_devices() -> None:
    with pytest.raises(ModelUnavailable, match="auto, cuda or cpu"):
        DiffusionEngine(EngineConfig(device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ModelUnavailable, match="no CUDA GPU"):
            DiffusionEngine(EngineConfig(device="cuda"))


@pytest.fixture(scope="session")
def tiny_sdxl_folder(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SDXL-shaped random pipeline (two text encoders, text_time embedding), saved like a real one."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tiny = ensure_tiny_model(cache_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tiny / "tokenizer")
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=32,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=AutoencoderKL.from_pretrained(tiny / "vae"),
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def test_sdxl_family_runs_txt2img_and_variation(tiny_sdxl_folder: Path, cache_dir: Path) -> None:
    from models.types import BatchSpec, GenerationBatch, ImageTask, Operation

    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=cache_dir))
    preset = engine.load(str(tiny_sdxl_folder))
    assert (preset.family, preset.width, preset.guidance) == ("sdxl", 1024, 6.0)
    assert preset.latent_rgb_bias is not None

    def batch(operation: Operation, *tasks: ImageTask) -> GenerationBatch:
        strength = 0.0 if operation is Operation.TXT2IMG else 0.6
        spec = BatchSpec(str(tiny_sdxl_folder), operation, 64, 64, 4, 6.0, preset.scheduler, strength)
        return GenerationBatch(spec, tasks)

    target = ImageTask("a lighthouse", "", seed=11)
    alone = engine.run(batch(Operation.TXT2IMG, target)).images[0]
    mixed = engine.run(batch(Operation.TXT2IMG, ImageTask("a ship", "fog", seed=3), target)).images
    assert [image.size for image in mixed] == [(64, 64), (64, 64)]
    assert int((torch.tensor(list(alone.getdata())) - torch.tensor(list(mixed[1].getdata()))).abs().max()) <= 2

    variations = engine.run(
        batch(Operation.VARIATION, *(ImageTask("a lighthouse", "", seed=n, init_image=alone) for n in (1, 2)))
    ).images
    assert [(image.mode, image.size) for image in variations] == [("RGB", (64, 64))] * 2
    assert variations[0].tobytes() != variations[1].tobytes()


# -- a preset told without loading (for a bot whose workers are not online yet) ------------------


def test_a_preset_is_told_without_loading_as_loading_tells_it(
    cache_dir: Path, tiny_sdxl_folder: Path, tmp_path: Path
) -> None:
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=cache_dir))
    folder = str(ensure_tiny_model(cache_dir))
    for model in (TINY_MODEL_ID, folder, str(tiny_sdxl_folder)):
        assert declared_preset(model) == engine.load(model), model

    sd2 = tmp_path / "sd2-768"
    for name, config in {
        "model_index.json": {"_class_name": "StableDiffusionPipeline"},
        "unet/config.json": {"cross_attention_dim": 1024, "sample_size": 96},
        "vae/config.json": {"block_out_channels": [128, 256, 512, 512]},
        "tokenizer/tokenizer_config.json": {"model_max_length": 77},
    }.items():
        (sd2 / name).parent.mkdir(parents=True, exist_ok=True)
        (sd2 / name).write_text(json.dumps(config))
    told = declared_preset(str(sd2))
    assert told is not None and (told.family, told.width, told.height, told.steps) == ("sd2", 768, 768, 25)


def test_a_single_file_s_preset_is_told_from_its_header(tmp_path: Path) -> None:
    cross_attention = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
    files = {
        "sd1": {cross_attention: torch.zeros(2, 768)},
        "sdxl": {"conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": torch.zeros(2)},
        "sd2": {cross_attention: torch.zeros(2, 1024)},  # 512 or 768 px: only its configuration says
        "unknown": {"some.other.weight": torch.zeros(2)},
    }
    told = {}
    for name, tensors in files.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        preset = declared_preset(str(path))
        told[name] = None if preset is None else (preset.family, preset.width, preset.max_prompt_tokens)
    assert told == {"sd1": ("sd1", 512, 77), "sdxl": ("sdxl", 1024, 77), "sd2": None, "unknown": None}


def test_a_hub_model_s_preset_is_told_from_this_host_s_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert declared_preset("latentcord-test/not-cached") is None  # the workers' load will tell

    snapshot = tmp_path / "hub" / "models--latentcord-test--xl" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    told = declared_preset("latentcord-test/xl")
    assert told is not None and (told.family, told.width, told.guidance) == ("sdxl", 1024, 6.0)


def test_a_preset_is_not_told_for_what_this_host_cannot_read_and_refused_for_what_never_runs(
    tmp_path: Path,
) -> None:
    assert declared_preset(str(tmp_path / "on-the-workers-host" / "model")) is None
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelUnavailable, match="FluxPipeline"):
        declared_preset(str(flux))
    with pytest.raises(UnsafeCheckpoint):
        declared_preset(str(tmp_path / "model.ckpt"))
