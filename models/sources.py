"""Where a model reference points, and what Latentcord runs, decided without torch.

``models.loading`` loads what these name; the bot process asks only these questions (a model's
preset before any worker announced it: ``models.presets``), so it never imports torch when
generation runs in other processes or on other hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from models.errors import ModelUnavailable, UnsafeCheckpoint
from models.families import BY_INDEX_CLASS, supported_families
from models.tiny import TINY_MODEL_ID
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})

# A Hugging Face repository id: owner/name, letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Key prefix only SDXL single-file checkpoints have (the second, OpenCLIP-G, text encoder).
SDXL_SINGLE_FILE_PREFIX = "conditioner.embedders.1."

#: The pipeline classes a ``model_index.json`` may name: one per family (``models.families``).
SUPPORTED_PIPELINES = tuple(BY_INDEX_CLASS)
#: The models built here, from configurations, for tests and a first run without downloads.
BUILTIN_MODELS = (TINY_MODEL_ID, TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID)


class SourceKind(StrEnum):
    TINY = "tiny"
    FOLDER = "folder"
    SINGLE_FILE = "single_file"
    HUB = "hub"


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a model reference points, decided without loading anything."""

    model: str
    kind: SourceKind
    location: str  # a folder, a file or a hub id


def resolve_model_source(model: str) -> ModelSource:
    """Classify ``model`` cheaply, raising for references that can never load.

    The engine calls this *before* it frees the resident pipeline, so a typo
    or a pickle file does not cost the model everyone is using.
    """
    if model in BUILTIN_MODELS:
        return ModelSource(model, SourceKind.TINY, model)
    path = Path(model).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeCheckpoint(
            f"{model} is a pickle checkpoint, which can run arbitrary code when loaded: "
            "convert it to .safetensors and use that file instead."
        )
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelUnavailable(f"{model} is not a diffusers model folder (it has no model_index.json).")
        return ModelSource(model, SourceKind.FOLDER, str(path))
    if path.is_file():
        if path.suffix.lower() == ".safetensors":
            return ModelSource(model, SourceKind.SINGLE_FILE, str(path))
        raise ModelUnavailable(
            f"{model} is not a model Latentcord can load: give a diffusers folder or a .safetensors file."
        )
    if _HUB_ID.match(model):
        return ModelSource(model, SourceKind.HUB, model)
    raise ModelUnavailable(
        f"No model named {model}: give a Hugging Face id, a local diffusers folder or a .safetensors file."
    )


def unsupported_pipeline(model: str, class_name: str) -> ModelUnavailable:
    """The refusal of a model whose ``model_index.json`` names a pipeline Latentcord does not run."""
    return ModelUnavailable(
        f"{model} is a {class_name or 'model of unknown type'}; Latentcord runs {supported_families()} models."
    )
