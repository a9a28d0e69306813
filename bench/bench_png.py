"""PNG compression level for results: encoding time against file size, measured, so the choice is not a guess.

A result PNG is encoded in a worker's side process and uploaded to Discord (10 MB a file for most
servers). Diffusion images are smooth regions with fine texture; the test picture here is that:
gradients, soft shapes and a little grain, at SD1.5's 512 px, its 1024 px grid and SDXL's 2048 px grid.

    python bench/bench_png.py
"""

from __future__ import annotations

import io
import statistics
import time
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def picture(side: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    base = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.4 + 0.3 * np.cos(5 * y), 0.3 + 0.5 * x * y], axis=-1)
    image = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = rng.integers(0, side, 2)
        r = int(rng.integers(side // 40, side // 6))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    image = image.filter(ImageFilter.GaussianBlur(side / 200))
    grain = rng.normal(0, 4, (side, side, 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


#: zlib's strategies, as Pillow's PNG writer takes them (``compress_type``): after PNG's row filters the
#: bytes are small residuals, where LZ77's long matches find little and run-length or Huffman alone may do.
STRATEGIES = {"default": zlib.Z_DEFAULT_STRATEGY, "RLE": zlib.Z_RLE, "Huffman only": zlib.Z_HUFFMAN_ONLY}


def flat_picture(side: int) -> Image.Image:
    """Flat colours and hard edges (a logo, a cartoon): where long runs and matches are the whole gain."""
    image = Image.new("RGB", (side, side), (240, 240, 235))
    draw = ImageDraw.Draw(image)
    step = side // 32
    for n in range(30):
        draw.rectangle(
            (n * step, n * step // 2, n * step + side // 5, n * step // 2 + side // 7), fill=(n * 8, 100, 200 - n * 5)
        )
        draw.line((0, n * step, side, side - n * step), fill=(0, 0, 0), width=3)
    return image


def measure(
    image: Image.Image, level: int, strategy: int = zlib.Z_DEFAULT_STRATEGY, repeat: int = 3
) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        buffer = io.BytesIO()
        started = time.perf_counter()
        image.save(buffer, format="PNG", optimize=False, compress_level=level, compress_type=strategy)
        times.append(time.perf_counter() - started)
        size = buffer.tell()
    return statistics.median(times), size


def main() -> None:
    for side, what in ((512, "an SD1.5 image"), (1024, "an SD1.5 grid"), (2048, "an SDXL grid")):
        image = picture(side)
        raw = side * side * 3
        print(f"{what}, {side}x{side} ({raw / 1e6:.1f} MB raw):")
        for level in (0, 1, 3, 6, 9):
            seconds, size = measure(image, level)
            print(f"  compress_level {level}: {seconds * 1000:7.1f} ms  {size / 1e6:5.2f} MB ({size / raw:.0%})")
        for name, strategy in STRATEGIES.items():
            seconds, size = measure(image, 1, strategy)
            print(f"  level 1, {name:>12}: {seconds * 1000:7.1f} ms  {size / 1e6:5.2f} MB ({size / raw:.0%})")
    flat = flat_picture(1024)
    print("flat colours and hard edges, 1024x1024:")
    for name, strategy in STRATEGIES.items():
        seconds, size = measure(flat, 1, strategy)
        print(f"  level 1, {name:>12}: {seconds * 1000:7.1f} ms  {size / 1e3:6.0f} kB")


if __name__ == "__main__":
    main()
