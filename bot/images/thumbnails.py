"""Thumbnails for the web gallery: WebP, at most ``THUMBNAIL_SIDE`` pixels on the longer side, made once.

A thumbnail lives beside the image it shows (``images_dir/<job id>/thumb-<n>.webp``), so whatever deletes
a job's folder (``/privacy delete``) deletes its thumbnails too. Decoding a PNG and encoding WebP is CPU
work: callers run it off the event loop.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bot.images.archive import write_atomically

#: The longer side of a thumbnail: a 2x2 card of them reads well at 1280 px, and a page of 48 stays small.
THUMBNAIL_SIDE = 384
WEBP_QUALITY = 80


def thumbnail_path(image: Path, index: int) -> Path:
    """Where the thumbnail of image ``index`` (from 0) of a job, whose file is ``image``, is kept."""
    return image.with_name(f"thumb-{index + 1}.webp")


def encode_thumbnail(picture: Image.Image, *, side: int = THUMBNAIL_SIDE) -> bytes:
    """``picture`` as a WebP no larger than ``side`` on its longer side."""
    small = picture.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()


def make_thumbnail(image: Path, target: Path, *, side: int = THUMBNAIL_SIDE) -> None:
    """Write ``target``, the thumbnail of the file ``image`` (kept as it is when ``target`` exists)."""
    if target.is_file():
        return
    with Image.open(image) as opened:
        opened.draft("RGB", (side, side))  # a JPEG (an older grid's fallback) decodes straight to a smaller size
        data = encode_thumbnail(opened, side=side)
    write_atomically(target, data)
