"""Images as files: PNG with the parameters that made them, or JPEG with the same text when a PNG is too large.

The text goes into a PNG text chunk named ``parameters`` in AUTOMATIC1111's format (written by
``bot.images.metadata.infotext``), which image viewers, Civitai and most UIs already read; a file
too large for Discord becomes a JPEG with the same text in its EXIF UserComment, where
AUTOMATIC1111 writes and reads it. Both halves encode: a worker its grids, the bot each image's
own file and what it uploads. Encoding is CPU work: callers run it off the event loop.
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

DISCORD_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EncodedImage:
    data: bytes
    filename: str
    content_type: str


PNG_COMPRESS_LEVEL = 1
# zlib's run-length strategy, by measurement (bench/bench_png.py): after PNG's row filters a diffusion image
# is small residuals, where run-length matching is 25% faster than zlib's default and 11% smaller; on flat
# drawings it keeps the long runs that Huffman-only coding loses (83 kB vs 79 kB default vs 424 kB).
PNG_COMPRESS_STRATEGY = zlib.Z_RLE


def encode_image(
    image: Image.Image, parameters: str, *, stem: str, limit_bytes: int | None = DISCORD_UPLOAD_LIMIT
) -> EncodedImage:
    """PNG with ``parameters`` (the text of ``bot.images.metadata.infotext``) in its ``parameters`` chunk; if the
    PNG would not fit ``limit_bytes``, JPEG at falling quality, the text in its EXIF.

    ``limit_bytes=None``: always PNG, lossless, for files kept rather than posted.
    """
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    # Level 1, by measurement (bench/bench_png.py): 45% less encoding time than 6, and an SDXL grid
    # fits Discord's limit; level 0 would not.
    image.save(
        buffer,
        format="PNG",
        pnginfo=info,
        optimize=False,
        compress_level=PNG_COMPRESS_LEVEL,
        compress_type=PNG_COMPRESS_STRATEGY,
    )
    if limit_bytes is None or buffer.tell() <= limit_bytes:
        return EncodedImage(buffer.getvalue(), f"{stem}.png", "image/png")
    exif = jpeg_exif(parameters)
    rgb = image.convert("RGB")
    for quality in (92, 85, 75, 60, 45, 30):
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=quality, exif=exif)
        if buffer.tell() <= limit_bytes:
            return EncodedImage(buffer.getvalue(), f"{stem}.jpg", "image/jpeg")
    scale = math.sqrt(limit_bytes / buffer.tell()) * 0.9
    smaller = rgb.resize((max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale))), Image.Resampling.LANCZOS)
    return encode_image(smaller, parameters, stem=stem, limit_bytes=limit_bytes)


EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
IMAGE_DESCRIPTION = 0x010E
# The EXIF standard's character code for UserComment, in its 8-byte field. AUTOMATIC1111 writes the text
# after it as UTF-16 big-endian (piexif.helper.UserComment with encoding="unicode") and reads it back the
# same way whatever the file's TIFF byte order; the Exif is written big-endian ("MM") too, so readers that
# follow the TIFF byte order instead (ExifTool, exiv2) agree with it.
USER_COMMENT_UNICODE = b"UNICODE\0"
# A JPEG's EXIF is one APP1 segment of at most 64 KiB; beyond it Pillow refuses to save. Room is left for
# the segment's own header and the IFDs around the text.
EXIF_TEXT_BYTES = 60_000


def jpeg_exif(text: str) -> bytes:
    """``text`` as a JPEG's EXIF: in UserComment, in full, where A1111 and the tools that copied it look.

    ImageDescription is ASCII by the standard (Pillow writes anything else as ``?``), so it carries the
    text too only when the text is ASCII, for the viewers that show only that tag.
    """
    comment = text.encode("utf-16-be")
    if len(comment) + (len(text) if text.isascii() else 0) > EXIF_TEXT_BYTES:
        # Only prompts near Discord's 6000 characters, with a style, get here: the JPEG is still posted, its
        # parameters cut (at a whole character) rather than the upload failing.
        text = comment[: (EXIF_TEXT_BYTES - 2) // 2 * 2].decode("utf-16-be", errors="ignore") + "…"
        comment = text.encode("utf-16-be")
    exif = Image.Exif()
    exif.endian = ">"
    exif[EXIF_IFD] = {USER_COMMENT: USER_COMMENT_UNICODE + comment}
    if text.isascii():
        exif[IMAGE_DESCRIPTION] = text
    return exif.tobytes()


def encode_preview(image: Image.Image) -> bytes:
    """A progress preview as PNG: small and short-lived, so the fastest compression."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_COMPRESS_STRATEGY)
    return buffer.getvalue()
