"""A job's files on disk: the grid and each image, written atomically, and read back after a restart.

``images_dir/<job id>/`` holds ``latentcord-<job id>.png``, the lossless grid the worker made, and
``1.png`` ... cut from it once the grid is posted (grids of older versions may be ``.jpg``). Files
are written under a unique ``.part`` name and renamed, so a crash never leaves half an image where
a finished one is expected, and two writers of the same file never trip over each other.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bot.errors import InvalidRequest
from bot.images.encoding import EncodedImage


def job_folder(images_dir: Path, job_id: int) -> Path:
    return images_dir / str(job_id)


def grid_stem(job_id: int) -> str:
    return f"latentcord-{job_id}"


def image_path(images_dir: Path, job_id: int, index: int) -> Path:
    """Where image ``index`` (from 0) of a job is kept."""
    return job_folder(images_dir, job_id) / f"{index + 1}.png"


def write_atomically(path: Path, data: bytes) -> None:
    # A part file of this process and thread: two threads writing the same file never share one.
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_grid(images_dir: Path, job_id: int) -> EncodedImage:
    """The stored grid of a finished job; ``FileNotFoundError`` when it is gone."""
    folder = job_folder(images_dir, job_id)
    found = sorted(folder.glob(grid_stem(job_id) + ".*"))  # .png, or .jpg when the PNG was too large
    if not found:
        raise FileNotFoundError(f"no grid in {folder}")
    content_type = "image/png" if found[0].suffix.lower() == ".png" else "image/jpeg"
    return EncodedImage(data=found[0].read_bytes(), filename=found[0].name, content_type=content_type)


def read_source_image(path: Path) -> bytes:
    """The encoded bytes of an image a variation or an upscale starts from, once checked to be an image."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            opened.verify()
    except FileNotFoundError:
        raise InvalidRequest(f"The source image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError):  # verify() reports broken PNG chunks as SyntaxError
        raise InvalidRequest(f"{path} is not an image: give a PNG, JPEG or WebP file.") from None
    return data
