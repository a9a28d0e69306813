"""Half the download: a model held at 16 bits loads its fp16 weights where it has them, its plain ones otherwise.

The two sets of weights differ in one marked tensor (the UNet's ``conv_in.bias``), so the loaded pipeline
itself says which files were read. Hub ids are read from a Hugging Face cache the test builds, offline, so
the same hub code path runs as for a real repository without the network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from models.loading import load_pipeline
from models.tiny import ensure_tiny_model

CPU = torch.device("cpu")
FP16_MARK = 0.25  # conv_in.bias of the fp16 files; the plain files hold the tiny model's random bias
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "models-cache"


@pytest.fixture(scope="module")
def with_fp16(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved twice, as SD 1.5's repository is: plain files, and the fp16 variant beside them."""
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.mktemp("with-fp16")
    shutil.copytree(ensure_tiny_model(cache_dir), folder, dirs_exist_ok=True)
    pipeline = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipeline.to(torch.float16)
    with torch.no_grad():
        pipeline.unet.conv_in.bias.fill_(FP16_MARK)
    pipeline.save_pretrained(folder, variant="fp16", safe_serialization=True)
    assert list(folder.glob("unet/*.fp16.safetensors")), "save_pretrained wrote no fp16 variant"
    return folder


@pytest.fixture(scope="module")
def plain_only(cache_dir: Path) -> Path:
    return ensure_tiny_model(cache_dir)


def loaded_fp16_files(model: str, dtype: torch.dtype, cache_dir: Path) -> bool:
    pipeline = load_pipeline(model, device=CPU, dtype=dtype, cache_dir=cache_dir)
    assert pipeline.unet.dtype == dtype
    return bool((pipeline.unet.conv_in.bias == FP16_MARK).all())


def test_a_folder_with_fp16_weights_loads_them_at_half_precision(with_fp16: Path, cache_dir: Path) -> None:
    assert loaded_fp16_files(str(with_fp16), torch.float16, cache_dir)
    assert loaded_fp16_files(str(with_fp16), torch.bfloat16, cache_dir)
    assert not loaded_fp16_files(str(with_fp16), torch.float32, cache_dir)


def test_a_folder_without_them_loads_its_plain_weights(plain_only: Path, cache_dir: Path) -> None:
    assert not loaded_fp16_files(str(plain_only), torch.float16, cache_dir)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_fp16: Path, plain_only: Path) -> Path:
    """Two repositories in Hugging Face's cache layout, as a download leaves them, with the network off."""
    hub = tmp_path / "hub"
    for name, folder in (("with-fp16", with_fp16), ("plain", plain_only)):
        repo = hub / f"models--latentcord-test--{name}"
        shutil.copytree(folder, repo / "snapshots" / REVISION)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub


def test_a_hub_model_with_the_fp16_variant_loads_it_at_half_precision(hub_cache: Path, cache_dir: Path) -> None:
    assert loaded_fp16_files("latentcord-test/with-fp16", torch.float16, cache_dir)
    assert not loaded_fp16_files("latentcord-test/with-fp16", torch.float32, cache_dir)


def test_a_hub_model_without_it_loads_its_plain_weights(hub_cache: Path, cache_dir: Path) -> None:
    assert not loaded_fp16_files("latentcord-test/plain", torch.float16, cache_dir)
