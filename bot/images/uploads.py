"""Pictures members give to ``/imagine``: checked, decoded safely, fitted to a job, and kept with it.

An attachment is refused before it is downloaded when Discord says it is too large or of a
type other than PNG, JPEG or WebP; once downloaded, the bytes decide (not the file name):
the format is read from them, and the pixel count from the header before anything is
decoded, so a small file that would inflate to gigabytes (a decompression bomb) is refused
without being inflated. Decoding runs off the event loop (the caller's ``to_thread``).

A kept picture is re-encoded as PNG under ``images_dir/sources/<sha256>.png``, written
atomically; the job's row names that file, so its buttons work after a restart.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import InvalidRequest
from bot.images.archive import write_atomically

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
#: More pixels than any model draws at; a header claiming more is not decoded.
MAX_UPLOAD_PIXELS: Final = 4096 * 4096
ACCEPTED_FORMATS: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ACCEPTED_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp")
SOURCES_FOLDER: Final = "sources"


def check_attachment(filename: str, content_type: str | None, size: int) -> None:
    """Refuse, with one sentence, what is not worth downloading."""
    if size > MAX_UPLOAD_BYTES:
        raise InvalidRequest(
            f"That picture is {size / 1024 / 1024:.1f} MB; pictures for /imagine may be at most "
            f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB."
        )
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ACCEPTED_FORMATS.values() and not filename.lower().endswith(_ACCEPTED_SUFFIXES):
        raise InvalidRequest("That file is not a picture /imagine can start from: give a PNG, JPEG or WebP image.")


def read_upload(data: bytes) -> Image.Image:
    """The picture in ``data`` as RGB, upright; ``InvalidRequest`` for anything else. Blocking: not on the loop."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidRequest(f"Pictures for /imagine may be at most {MAX_UPLOAD_BYTES // 1024 // 1024} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=tuple(ACCEPTED_FORMATS)) as opened:
                width, height = opened.size  # from the header; nothing decoded yet
                if width * height > MAX_UPLOAD_PIXELS:
                    raise InvalidRequest(
                        f"That picture has too many pixels ({width}x{height}); pictures for /imagine may have "
                        f"at most {MAX_UPLOAD_PIXELS // 1_000_000} million."
                    )
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                return upright.convert("RGB")
    except InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(
            f"That picture has too many pixels; pictures for /imagine may have at most "
            f"{MAX_UPLOAD_PIXELS // 1_000_000} million."
        ) from None
    except UnidentifiedImageError:
        raise InvalidRequest(
            "That file is not a picture /imagine can start from: give a PNG, JPEG or WebP image."
        ) from None
    except (OSError, SyntaxError, ValueError):  # truncated or corrupt data
        raise InvalidRequest("That picture could not be read; it may be damaged. Try saving it again.") from None


def fit_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` cut to the shape ``width``:``height`` about its centre, then scaled to that size."""
    if image.size == (width, height):
        return image
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def store_upload(images_dir: Path, image: Image.Image) -> Path:
    """Keep ``image`` as PNG named by its content, and return its path. Blocking."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    folder = images_dir / SOURCES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        write_atomically(path, data)
    return path
