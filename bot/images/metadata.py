"""What made an image, written into the file users download.

The recipe goes into a PNG text chunk named ``parameters`` in AUTOMATIC1111's format,
which image viewers, Civitai and most UIs already read; a file too large for Discord
becomes a JPEG with the same text in its EXIF UserComment, where AUTOMATIC1111 writes and
reads it. Encoding is CPU work: callers run it off the event loop.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, PngImagePlugin

from bot.images.edits import describe
from bot.jobs.recipe import lora_tags, lora_uses

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe

DISCORD_UPLOAD_LIMIT = 10 * 1024 * 1024

# Diffusers scheduler class names, as AUTOMATIC1111 names the samplers.
SAMPLER_NAMES = {
    "EulerAncestralDiscreteScheduler": "Euler a",
    "EulerDiscreteScheduler": "Euler",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
    "UniPCMultistepScheduler": "UniPC",
}


def sampler_name(scheduler: str) -> str:
    """A diffusers scheduler class as AUTOMATIC1111 names its sampler ("DPM++ 2M"), or its class name."""
    return SAMPLER_NAMES.get(scheduler, scheduler)


@dataclass(frozen=True, slots=True)
class EncodedImage:
    data: bytes
    filename: str
    content_type: str


def infotext(recipe: Recipe) -> str:
    """What made an image, in AUTOMATIC1111's ``parameters`` format; a grid lists every seed.

    LoRAs are written as A1111 does, as ``<lora:name:weight>`` at the end of the prompt and their
    hashes in ``Lora hashes``, so other tools find them.
    """
    tags = lora_tags(recipe)
    lines = [f"{recipe.prompt} {tags}" if tags else recipe.prompt]
    if recipe.negative_prompt:
        lines.append(f"Negative prompt: {recipe.negative_prompt}")
    fields = [
        ("Steps", str(recipe.steps)),
        ("Sampler", sampler_name(recipe.scheduler)),
        ("CFG scale", f"{recipe.guidance:g}"),
        ("Seed", str(recipe.seeds[0])),
        ("Size", f"{recipe.width}x{recipe.height}"),
        ("Model", recipe.model),
    ]
    if recipe.strength:
        fields.append(("Denoising strength", f"{recipe.strength:g}"))
    edit = edit_of(recipe)
    if edit:
        fields.append(("Edit", edit))
    if recipe.style:
        fields.append(("Style", recipe.style))
    uses = lora_uses(recipe)
    if uses:
        fields.append(("Lora hashes", ", ".join(f"{use.name}: {use.sha256[:12]}" for use in uses)))
    if len(recipe.seeds) > 1:
        fields.append(("Seeds", ", ".join(str(seed) for seed in recipe.seeds)))
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields))
    return "\n".join(lines)


def edit_of(recipe: Recipe) -> str:
    """What was done to which image, in words: "Zoom Out 2x of job 12, image 1", "img2img from a picture" ..."""
    if recipe.kind == "image":
        return "img2img from a member's picture"
    where = f"job {recipe.parent_job_id}, image {(recipe.parent_image or 0) + 1}"
    if recipe.mask:
        return f"{describe(recipe.mask)} of {where}"
    if recipe.kind in ("variation", "upscale") and recipe.parent_job_id is not None:
        return f"{recipe.kind} of {where}"
    return ""


def _quote(value: str) -> str:
    # AUTOMATIC1111 quotes a value holding a comma, colon or newline, JSON style, so it parses back.
    if any(mark in value for mark in ",:\n"):
        return json.dumps(value, ensure_ascii=False)
    return value


PNG_COMPRESS_LEVEL = 1
# zlib's run-length strategy, by measurement (bench/bench_png.py): after PNG's row filters a diffusion image
# is small residuals, where run-length matching is 25% faster than zlib's default and 11% smaller; on flat
# drawings it keeps the long runs that Huffman-only coding loses (83 kB vs 79 kB default vs 424 kB).
PNG_COMPRESS_STRATEGY = zlib.Z_RLE


def encode_image(
    image: Image.Image, recipe: Recipe, *, stem: str, limit_bytes: int | None = DISCORD_UPLOAD_LIMIT
) -> EncodedImage:
    """PNG with the parameters; if the PNG would not fit ``limit_bytes``, JPEG at falling quality.

    ``limit_bytes=None``: always PNG, lossless, for files kept rather than posted.
    """
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext(recipe))
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
    exif = jpeg_exif(infotext(recipe))
    rgb = image.convert("RGB")
    for quality in (92, 85, 75, 60, 45, 30):
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=quality, exif=exif)
        if buffer.tell() <= limit_bytes:
            return EncodedImage(buffer.getvalue(), f"{stem}.jpg", "image/jpeg")
    scale = math.sqrt(limit_bytes / buffer.tell()) * 0.9
    smaller = rgb.resize((max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale))), Image.Resampling.LANCZOS)
    return encode_image(smaller, recipe, stem=stem, limit_bytes=limit_bytes)


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


def fit_upload(encoded: EncodedImage, recipe: Recipe, limit_bytes: int) -> EncodedImage:
    """``encoded`` as Discord will take it: itself when it fits ``limit_bytes``, else a JPEG made from it.

    Files are kept lossless whatever their size; only what is uploaded shrinks. CPU work when it shrinks.
    """
    if len(encoded.data) <= limit_bytes:
        return encoded
    with Image.open(io.BytesIO(encoded.data)) as image:
        return encode_image(image, recipe, stem=encoded.filename.rsplit(".", 1)[0], limit_bytes=limit_bytes)


def encode_preview(image: Image.Image) -> bytes:
    """A progress preview as PNG: small and short-lived, so the fastest compression."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_COMPRESS_STRATEGY)
    return buffer.getvalue()
