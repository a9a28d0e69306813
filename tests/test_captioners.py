"""The captioner for /describe (issue 25): a tiny random-weight Florence-2 built here, loaded through
``from_pretrained`` as ``florence-community/Florence-2-base`` is, answering the four describe tasks for a batch
of pictures through the CAPTION operation and the engine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from models.captioners import DESCRIBE_TASKS, FlorenceCaptioner, captioner_loader, load_captioner
from models.components import Captioner, ComponentKind
from models.engine import DiffusionEngine, EngineConfig
from models.errors import InvalidBatch, ModelUnavailable
from models.operations import caption
from models.tiny_florence import TINY_FLORENCE_MODEL_ID, ensure_tiny_florence
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def captioner(cache_dir: Path) -> Captioner:
    return load_captioner(TINY_FLORENCE_MODEL_ID, CPU, torch.float32, cache_dir=cache_dir)


def a_picture(seed: int, width: int = 100, height: int = 80) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def describe_batch(*pictures: Image.Image) -> tuple[BatchSpec, tuple[ImageTask, ...]]:
    """A /describe job per picture: its four tasks, in order, as the bot sends them."""
    spec = BatchSpec(
        model=TINY_FLORENCE_MODEL_ID,
        operation=Operation.CAPTION,
        width=64,
        height=64,
        steps=0,
        guidance=0.0,
        scheduler="",
    )
    tasks = tuple(ImageTask(task, "", seed=0, init_image=picture) for picture in pictures for task in DESCRIBE_TASKS)
    return spec, tasks


def test_the_tiny_model_is_built_once_and_its_folder_reused(cache_dir: Path, captioner: Captioner) -> None:
    folder = ensure_tiny_florence(cache_dir)
    weights = folder / "model.safetensors"
    built = weights.stat().st_mtime_ns

    assert {"config.json", "generation_config.json", "processor_config.json", "tokenizer.json"} <= {
        path.name for path in folder.iterdir()
    }
    assert ensure_tiny_florence(cache_dir) == folder
    load_captioner(TINY_FLORENCE_MODEL_ID, CPU, torch.float32, cache_dir=cache_dir)
    assert weights.stat().st_mtime_ns == built
    # Nothing half-built is left beside it.
    assert sorted(path.name for path in cache_dir.iterdir()) == [folder.name]


def test_two_builds_are_the_same_bytes(cache_dir: Path, tmp_path: Path) -> None:
    again = ensure_tiny_florence(tmp_path)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (ensure_tiny_florence(cache_dir) / name).read_bytes(), name


def test_a_batch_of_two_pictures_gets_one_text_per_picture_and_task(captioner: Captioner) -> None:
    first, second = a_picture(1), a_picture(2)
    pictures = [first] * len(DESCRIBE_TASKS) + [second] * len(DESCRIBE_TASKS)
    tasks = list(DESCRIBE_TASKS) * 2

    texts = list(captioner(pictures, tasks))

    assert len(texts) == 8
    assert all(isinstance(text, str) and text == text.strip() for text in texts)
    # The same input says the same; each picture's answers are its own, whatever shares its batch.
    assert list(captioner(pictures, tasks)) == texts
    assert list(captioner([second] * 4, list(DESCRIBE_TASKS))) == texts[4:]
    assert list(captioner([first], [DESCRIBE_TASKS[0]])) == texts[:1]
    # Random weights, but not blind: the pictures and the tasks change what is said.
    assert texts[:4] != texts[4:]
    assert len(set(texts[:3])) > 1


def test_the_caption_operation_passes_each_task_its_prompt(captioner: Captioner) -> None:
    first, second = a_picture(3), a_picture(4, 64, 64)
    spec, tasks = describe_batch(first, second)

    outputs = caption.run(captioner, spec, tasks)

    assert outputs.images == ()
    assert outputs.texts == tuple(
        captioner([task.init_image for task in tasks if task.init_image], list(DESCRIBE_TASKS) * 2)
    )


def test_the_engine_loads_the_captioner_and_describes_a_picture(cache_dir: Path, captioner: Captioner) -> None:
    loader = captioner_loader(cache_dir)
    engine = DiffusionEngine(
        EngineConfig(device="cpu", cache_dir=cache_dir, component_loaders={ComponentKind.CAPTIONER: loader})
    )
    picture = a_picture(5)
    spec, tasks = describe_batch(picture)

    output = engine.run(GenerationBatch(spec, tasks))

    assert output.texts == tuple(captioner([picture] * 4, list(DESCRIBE_TASKS)))
    assert output.images == ()


def test_a_detection_becomes_a_prompt_of_its_labels_each_once(cache_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(ensure_tiny_florence(cache_dir))
    answers = {
        "<OD>": "</s><s>car<loc_10><loc_20><loc_300><loc_400>tree<loc_500><loc_0><loc_999><loc_700>"
        "car<loc_600><loc_600><loc_900><loc_900></s>",
        "<CAPTION>": "</s><s> A red car parked by a tree.</s>",
    }
    scripted = ScriptedFlorence(processor, list(answers.values()))
    texts = FlorenceCaptioner(scripted, processor, max_new_tokens={task: 8 for task in answers})(
        [a_picture(6), a_picture(7)], list(answers)
    )

    assert texts == ["car, tree", "A red car parked by a tree."]
    assert scripted.max_new_tokens == 8


def test_a_task_it_does_not_answer_is_refused(captioner: Captioner) -> None:
    with pytest.raises(InvalidBatch, match="not <OCR>"):
        captioner([a_picture(8)], ["<OCR>"])
    with pytest.raises(InvalidBatch, match="one task per image"):
        captioner([a_picture(8)], list(DESCRIBE_TASKS))


@pytest.mark.parametrize(
    "reference",
    ["builtin:tiny-florence3", "no such folder", "/nowhere/florence-2", "empty-folder", "other-weights"],
)
def test_a_captioner_that_cannot_load_is_refused_with_one_sentence(
    reference: str, tmp_path: Path, cache_dir: Path
) -> None:
    if reference == "empty-folder":
        reference = str(tmp_path)
    elif reference == "other-weights":
        reference = str(with_other_weight_names(ensure_tiny_florence(cache_dir), tmp_path / "other"))

    with pytest.raises(ModelUnavailable) as refused:
        load_captioner(reference, CPU, torch.float32, cache_dir=tmp_path / "cache")

    sentence = str(refused.value)
    assert reference in sentence
    assert sentence.endswith(".") and "\n" not in sentence
    assert not os.path.exists(tmp_path / "cache") or not any((tmp_path / "cache").iterdir())


def with_other_weight_names(folder: Path, copy: Path) -> Path:
    """``folder`` with its weights under other names, as Microsoft's remote-code Florence-2 has them: a
    configuration that loads, and weights that would all be left random."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, copy)
    weights = load_file(copy / "model.safetensors")
    save_file({f"florence.{name}": tensor for name, tensor in weights.items()}, copy / "model.safetensors")
    return copy


class ScriptedFlorence:
    """Stands in for the model where a real one cannot say a chosen sentence: ``generate`` gives back
    ``answers`` (as the tokenizer spells them, padded as a batch is) and records its budget."""

    def __init__(self, processor: Any, answers: Sequence[str]) -> None:
        self.device = CPU
        self.dtype = torch.float32
        self.generation_config = None
        self.max_new_tokens = 0
        self._ids = processor.tokenizer(list(answers), add_special_tokens=False, padding=True, return_tensors="pt")

    def generate(self, **inputs: Any) -> torch.Tensor:
        self.max_new_tokens = inputs["max_new_tokens"]
        assert inputs["pixel_values"].shape[0] == self._ids["input_ids"].shape[0]
        return self._ids["input_ids"]
