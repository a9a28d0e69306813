"""Pictures members give the bot (/imagine, /edit, references, moodboards, /describe): checked, decoded
safely, fitted to a job, and kept with it.

An attachment is refused before it is downloaded when Discord says it is too large or of a
type other than PNG, JPEG or WebP; once downloaded, the bytes decide (not the file name):
the format is read from them, and the pixel count from the header before anything is
decoded, so a small file that would inflate to gigabytes (a decompression bomb) is refused
without being inflated. Decoding runs off the event loop (the caller's ``to_thread``).

A kept picture is re-encoded as PNG under ``images_dir/sources/<sha256>.png``, written
atomically; the job's row names that file, so its buttons work after a restart. It is deleted
when no job may start from it any more (``KeptPictures``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
import warnings
from collections import Counter
from collections.abc import Collection
from concurrent.futures import Executor
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
#: A reference image is kept at most this large (its aspect kept): FLUX.2 klein reads no more of one.
REFERENCE_MAX_PIXELS: Final = 1024 * 1024
SOURCES_FOLDER: Final = "sources"
#: A picture no job names is deleted at start-up once it was last given longer ago than this: time enough for
#: an admission between keeping the picture and recording its job, in this process or another on the same
#: folder (the command line).
UNUSED_PICTURE_GRACE_S: Final = 3600.0


def check_attachment(filename: str, content_type: str | None, size: int) -> None:
    """Refuse, with one sentence, what is not worth downloading."""
    if size > MAX_UPLOAD_BYTES:
        raise InvalidRequest(
            f"That picture is {size / 1024 / 1024:.1f} MB; pictures given to the bot may be at most "
            f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB."
        )
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ACCEPTED_FORMATS.values() and not filename.lower().endswith(_ACCEPTED_SUFFIXES):
        raise InvalidRequest("That file is not a picture the bot can read: give a PNG, JPEG or WebP image.")


def read_upload(data: bytes) -> Image.Image:
    """The picture in ``data`` as RGB, upright; ``InvalidRequest`` for anything else. Blocking: not on the loop."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidRequest(f"Pictures given to the bot may be at most {MAX_UPLOAD_BYTES // 1024 // 1024} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=tuple(ACCEPTED_FORMATS)) as opened:
                width, height = opened.size  # from the header; nothing decoded yet
                if width * height > MAX_UPLOAD_PIXELS:
                    raise InvalidRequest(
                        f"That picture has too many pixels ({width}x{height}); pictures given to the bot may have "
                        f"at most {MAX_UPLOAD_PIXELS // 1_000_000} million."
                    )
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                return upright.convert("RGB")
    except InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(
            f"That picture has too many pixels; pictures given to the bot may have at most "
            f"{MAX_UPLOAD_PIXELS // 1_000_000} million."
        ) from None
    except UnidentifiedImageError:
        raise InvalidRequest("That file is not a picture the bot can read: give a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError):  # truncated or corrupt data
        raise InvalidRequest("That picture could not be read; it may be damaged, so try saving it again.") from None


def fit_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` cut to the shape ``width``:``height`` about its centre, then scaled to that size."""
    if image.size == (width, height):
        return image
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def bounded(image: Image.Image, max_pixels: int = REFERENCE_MAX_PIXELS) -> Image.Image:
    """``image`` scaled down, its aspect kept, to at most ``max_pixels`` (a reference: the model reads no more)."""
    if image.width * image.height <= max_pixels:
        return image
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_upload(image: Image.Image) -> bytes:
    """``image`` as the PNG kept for it. CPU work: not on the event loop."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class KeptPictures:
    """The pictures kept under ``images_dir/sources``, each as long as a job may still start from it.

    A picture is named by its content, so members who give the same picture share one file. Files are
    written and deleted on one thread (the service's disk thread) in the order asked, and an admission
    holds its picture from before its write is asked until its job is recorded (``release``): a picture
    let go while the same picture is given again is deleted and then written again, never the reverse.
    Which jobs may still start from a picture is SQLite's to say; the service asks it before ``let_go``.
    """

    def __init__(self, images_dir: Path, disk: Executor) -> None:
        self.folder = images_dir / SOURCES_FOLDER
        self._disk = disk
        self._held: Counter[str] = Counter()

    async def keep(self, image: Image.Image) -> Path:
        """Keep ``image`` and hold it until ``release``; the path a job names it by."""
        data = await asyncio.to_thread(encode_upload, image)
        path = self.folder / f"{hashlib.sha256(data).hexdigest()}.png"
        self._held[path.name] += 1
        try:
            await asyncio.get_running_loop().run_in_executor(self._disk, _write_once, path, data)
        except BaseException:
            self.release(path)
            raise
        return path

    def release(self, path: str | Path) -> None:
        """The admission holding ``path`` recorded its job, or gave up."""
        name = Path(path).name
        self._held[name] -= 1
        if self._held[name] <= 0:
            del self._held[name]

    def owns(self, path: str) -> bool:
        """Whether ``path`` is a picture kept here (the command line may name any file of its user's)."""
        return Path(path).parent == self.folder

    async def let_go(self, path: str) -> bool:
        """Delete the kept picture ``path``, which no job may start from any more, unless an admission holds it.

        Whether it was deleted; only a picture kept here ever is.
        """
        if not self.owns(path) or Path(path).name in self._held:
            return False
        return await asyncio.get_running_loop().run_in_executor(self._disk, _delete, Path(path))

    async def sweep(self, in_use: Collection[str], *, older_than_s: float = UNUSED_PICTURE_GRACE_S) -> list[Path]:
        """Delete the pictures no job may start from (``in_use``: those some job may) that were last given more
        than ``older_than_s`` ago, and the part files a crash left; the paths deleted."""
        kept = frozenset({Path(path).name for path in in_use} | set(self._held))
        cutoff = time.time() - older_than_s
        return await asyncio.get_running_loop().run_in_executor(self._disk, _sweep, self.folder, kept, cutoff)


def _write_once(path: Path, data: bytes) -> None:
    if path.exists():
        os.utime(path)  # given again: the sweep's grace counts from now
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data)


def _delete(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _sweep(folder: Path, kept: frozenset[str], cutoff: float) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    swept: list[Path] = []
    for path in entries:
        if path.name in kept:
            continue
        try:
            if not path.is_file() or path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        swept.append(path)
    return swept
