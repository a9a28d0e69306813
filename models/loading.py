"""Turning a model reference into a resident diffusers pipeline, safely.

A reference is ``builtin:tiny``, a local diffusers folder, a single
``.safetensors`` file, or a Hugging Face id (``owner/name``). Pickle
checkpoints are refused before anything opens them: unpickling runs whatever
code the file contains. Weights are always read with ``use_safetensors=True``.

Device and precision: on CUDA the weights are bf16 where the GPU supports it
(same speed as fp16, but no overflow, so SDXL's VAE needs no fp32 upcast and
SD1 fine-tunes do not turn out black), fp16 otherwise; attention is PyTorch's
SDPA, which diffusers uses by default with torch 2. On CPU everything is fp32.
At 16 bits, a model that has fp16 weights is read from those: half the download.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from models.errors import ModelUnavailable
from models.families import BY_INDEX_CLASS, family
from models.sources import (
    SDXL_SINGLE_FILE_PREFIX,
    SUPPORTED_PIPELINES,
    ModelSource,
    SourceKind,
    resolve_model_source,
    unsupported_pipeline,
)
from models.tiny import TINY_MODEL_ID, ensure_tiny_model
from models.tiny_flow import ensure_tiny_flow_model

if TYPE_CHECKING:
    from models.pipeline import Pipeline

log = logging.getLogger(__name__)

# Weights held at 16 bits load a model's fp16 variant where it has one (``_weights_variant``).
HALF_PRECISION = frozenset({torch.float16, torch.bfloat16})
FP16_VARIANT = "fp16"
# diffusers' names for a variant's weights: ``model.fp16.safetensors``, ``model.fp16-00001-of-00002.safetensors``.
_FP16_WEIGHTS = re.compile(r"\.fp16(-\d+-of-\d+)?\.safetensors$")

# VAE decoding of one large image is the memory peak of a whole job. Images up to
# this many pixels on a side decode in one piece (output identical to untiled);
# larger ones (2x upscales of SDXL images) decode in overlapping tiles.
VAE_TILE_THRESHOLD_PX = 1024


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU (see the module docstring)."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_pipeline(
    model: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path,
) -> Pipeline:
    """Load ``model`` onto ``device`` in ``dtype``; raise ``ModelUnavailable`` if it cannot be.

    Single ``.safetensors`` files carry weights but no configuration: diffusers
    fetches the matching config (for example the SD1.5 or SDXL base repository)
    from Hugging Face the first time and reads it from the local cache after
    that. Offline without that cache, such a file cannot be loaded, and the
    error says so.
    """
    source = resolve_model_source(model)
    # 1. Read the weights (CPU), refusing unsupported pipeline families early.
    try:
        match source.kind:
            case SourceKind.TINY:
                folder = (
                    ensure_tiny_model(cache_dir) if model == TINY_MODEL_ID else ensure_tiny_flow_model(model, cache_dir)
                )
                pipeline = _from_pretrained(model, str(folder), dtype)
            case SourceKind.FOLDER:
                pipeline = _from_pretrained(model, source.location, dtype)
            case SourceKind.HUB:
                pipeline = _from_pretrained(model, source.location, dtype, hub=True)
            case SourceKind.SINGLE_FILE:
                pipeline = _from_single_file(model, Path(source.location), dtype)
    except ModelUnavailable:
        raise
    except Exception as exc:
        raise ModelUnavailable(_load_failure_sentence(source, exc)) from exc

    # 2. Move to the device and set it up for the memory it has.
    pipeline.set_progress_bar_config(disable=True)
    try:
        pipeline.to(device)
    except torch.cuda.OutOfMemoryError as exc:
        del pipeline
        torch.cuda.empty_cache()
        raise ModelUnavailable(f"{model} does not fit in this GPU's memory.") from exc
    if device.type == "cuda":
        _configure_vae_memory(pipeline)
    return pipeline


def _from_pretrained(model: str, location: str, dtype: torch.dtype, *, hub: bool = False) -> Pipeline:
    """Load a diffusers-format pipeline (folder or hub id) after checking its family.

    ``model_index.json`` names the pipeline class; reading it first means an
    unsupported model (Flux, a video model) is refused before gigabytes of
    weights are downloaded or read.
    """
    import diffusers

    index = _read_model_index(model, location, hub=hub)
    class_name = str(index.get("_class_name", ""))
    if class_name not in SUPPORTED_PIPELINES:
        raise unsupported_pipeline(model, class_name)
    pipeline_class = getattr(diffusers, class_name)
    dtype = _family_dtype(class_name, dtype)
    return pipeline_class.from_pretrained(
        location,
        dtype=dtype,
        use_safetensors=True,
        **_weights_variant(location, dtype, hub=hub),
        **_no_safety_checker(class_name),
    )


def _weights_variant(location: str, dtype: torch.dtype, *, hub: bool) -> dict[str, str]:
    """``variant="fp16"`` when the model has fp16 weights and is held at 16 bits anyway.

    Half the download and half the reading (SD 1.5: about 2 GB, not 4); the weights are the same
    numbers rounded to 16 bits, which the cast to ``dtype`` would round them to anyway. Decided from
    the files the model has, so a repository without the variant loads its plain files, as before.
    """
    if dtype not in HALF_PRECISION:
        return {}
    files = _hub_files(location) if hub else _weight_files(Path(location))
    return {"variant": FP16_VARIANT} if any(_FP16_WEIGHTS.search(name) for name in files) else {}


def _hub_files(repo_id: str) -> list[str]:
    """The files of a hub repository: the hub's listing, or offline what the cache holds of it.

    Offline, diffusers loads from the cached snapshot, so what is there is what can be loaded.
    """
    from huggingface_hub import is_offline_mode, list_repo_files, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.utils import httpx  # the HTTP client huggingface_hub uses, whichever it is

    if not is_offline_mode():
        try:
            return list_repo_files(repo_id)
        except (HfHubHTTPError, OfflineModeIsEnabled, httpx.TransportError) as exc:
            log.warning("could not list the files of %s (%s); choosing its weights from the cache", repo_id, exc)
    # model_index.json is in the cache by now (_read_model_index fetched it): its folder is the snapshot.
    index = try_to_load_from_cache(repo_id, "model_index.json")
    return _weight_files(Path(index).parent) if isinstance(index, str) else []


def _weight_files(folder: Path) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in folder.rglob("*.safetensors")]


def _read_model_index(model: str, location: str, *, hub: bool) -> dict[str, Any]:
    """``model_index.json`` of a folder, or of a hub repository (fetched into the Hugging Face cache).

    Read here rather than with ``DiffusionPipeline.load_config``, which hands
    ``hf_hub_download`` the deprecated ``local_dir_use_symlinks`` argument and so
    printed huggingface_hub's deprecation warning on every hub load.
    """
    if hub:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(location, "model_index.json"))
    else:
        path = Path(location) / "model_index.json"
    index = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(index, dict):
        raise ModelUnavailable(f"{model} is not a diffusers model (its model_index.json is not a JSON object).")
    return index


def _from_single_file(model: str, path: Path, dtype: torch.dtype) -> Pipeline:
    """Load an original-format ``.safetensors`` checkpoint, telling SD from SDXL by its keys."""
    import diffusers
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            keys = list(weights.keys())
    except Exception as exc:
        raise ModelUnavailable(f"{model} is not a readable .safetensors file.") from exc
    is_sdxl = any(key.startswith(SDXL_SINGLE_FILE_PREFIX) for key in keys)
    class_name = "StableDiffusionXLPipeline" if is_sdxl else "StableDiffusionPipeline"
    pipeline_class = getattr(diffusers, class_name)
    return pipeline_class.from_single_file(str(path), dtype=dtype, **_no_safety_checker(class_name))


def _family_dtype(class_name: str, dtype: torch.dtype) -> torch.dtype:
    """``dtype``, or the family's own 16-bit type where it is held at 16 bits (FLUX.2 and Z-Image: bfloat16,
    whose range their activations need; fp16 overflows to black images)."""
    wanted = family(BY_INDEX_CLASS[class_name]).half_dtype
    return getattr(torch, wanted) if wanted is not None and dtype in HALF_PRECISION else dtype


def _no_safety_checker(class_name: str) -> dict[str, Any]:
    """SD1/SD2 ship a CLIP safety checker; we classify with our own, so skip loading it."""
    if class_name != "StableDiffusionPipeline":
        return {}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _configure_vae_memory(pipeline: Pipeline) -> None:
    """Bound the VAE's memory peak, without changing images up to ``VAE_TILE_THRESHOLD_PX``.

    Slicing decodes a batch one image at a time (same pixels, a fraction of
    the memory); tiling kicks in only above the threshold, where a 2048 px
    decode would otherwise need more memory than the whole UNet step.
    """
    vae = pipeline.vae
    if hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if hasattr(vae, "tile_sample_min_size") and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
        vae.tile_sample_min_size = VAE_TILE_THRESHOLD_PX
        vae.tile_latent_min_size = VAE_TILE_THRESHOLD_PX // int(pipeline.vae_scale_factor)


def _load_failure_sentence(source: ModelSource, exc: Exception) -> str:
    """One sentence for the user; the exception itself goes to the log via ``__cause__``."""
    log.warning("loading %s failed: %s", source.model, exc)
    match source.kind:
        case SourceKind.HUB:
            return (
                f"Could not load {source.model} from Hugging Face: check the id, that its weights are "
                "in .safetensors format, and that this machine can reach huggingface.co "
                "(or has the model in its cache)."
            )
        case SourceKind.SINGLE_FILE:
            return (
                f"Could not load {source.model}: a single .safetensors file needs its configuration from "
                "Hugging Face once (run once online, or use a diffusers folder instead)."
            )
        case SourceKind.FOLDER:
            if isinstance(exc, json.JSONDecodeError):
                return f"{source.model} is not a diffusers model folder (its model_index.json is not valid)."
            return f"Could not load the model folder {source.model}: its files are incomplete or not .safetensors."
        case _:
            return f"Could not build the builtin tiny model in the model cache ({exc.__class__.__name__})."
