"""The NSFW classifier (the real open_nsfw model from the wheel) and the policy helpers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.safety import ImageClassifier, OpenNsfwClassifier, blurred_placeholder, withheld_indices


@pytest.fixture(scope="module")
def classifier() -> OpenNsfwClassifier:
    return OpenNsfwClassifier()


def gradient(width: int = 256, height: int = 256) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    array = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    return Image.fromarray(array, mode="RGB")


def test_a_gradient_is_not_flagged(classifier: OpenNsfwClassifier) -> None:
    checker: ImageClassifier = classifier
    scores = checker.nsfw_scores([gradient(), gradient(64, 64).convert("L")])
    assert len(scores) == 2
    assert all(0.0 <= score < 0.5 for score in scores)
    assert checker.nsfw_scores([]) == []


def test_lazy_load_is_thread_safe(classifier: OpenNsfwClassifier) -> None:
    fresh = OpenNsfwClassifier()
    results: list[list[float]] = []
    threads = [threading.Thread(target=lambda: results.append(fresh.nsfw_scores([gradient()]))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert results[0] == results[1] == results[2] == classifier.nsfw_scores([gradient()])


def test_withheld_indices() -> None:
    scores = [0.1, 0.85, 0.5, 0.49]
    assert withheld_indices(scores, 0.5) == frozenset({1, 2})
    assert withheld_indices(scores, 0.9) == frozenset()
    assert withheld_indices([], 0.5) == frozenset()


def test_blurred_placeholder_hides_the_picture() -> None:
    picture = Image.new("RGB", (256, 192), "white")
    draw = ImageDraw.Draw(picture)
    draw.rectangle((40, 40, 120, 150), fill="black")
    draw.text((150, 80), "HELLO", fill="red")

    blurred = blurred_placeholder(picture)

    assert (blurred.mode, blurred.size) == ("RGB", picture.size)
    before = np.asarray(picture, dtype=np.int16)
    after = np.asarray(blurred, dtype=np.int16)
    assert np.abs(before - after).max() > 100
    # Edges are gone: neighbouring pixels barely differ anywhere.
    assert np.abs(np.diff(after, axis=1)).max() < 16
    assert np.abs(np.diff(after, axis=0)).max() < 16
