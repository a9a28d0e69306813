"""A page of the web gallery with 48 thumbnails: how long a signed-in member's browser waits for all of it.

The real gallery server (bot/web) over a real store holds 12 delivered grids of four 1024 x 1024 images each
(as SDXL or FLUX.2 klein make them). A client on the same machine fetches the page and then its 48 thumbnails,
six at a time as a browser does over HTTP/1.1. Printed: the first load (every thumbnail made then, once, off
the event loop) and the later loads (thumbnails served from disk), min / median / max. Goal on a 2-core CPU
host: a later load under 300 ms.

    python bench/bench_gallery.py [--runs 10] [--side 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import aiohttp
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.images.archive import image_path
from bot.jobs.recipe import JobKind, Recipe
from bot.web.oauth import DiscordOAuth
from bot.web.server import GalleryServer
from bot.web.sessions import SESSION_COOKIE, CookieSigner, new_token, token_hash
from db.records import NewJob
from db.store import Store

GUILD, CHANNEL, MEMBER = 1_000_000_000_000_001, 1_000_000_000_000_002, 1_000_000_000_000_003
GRIDS, IMAGES = 12, 4
SECRET = "bench-client-secret"
BROWSER_CONNECTIONS = 6


def picture(side: int, seed: int) -> Image.Image:
    """Smooth colour with fine noise on it: about the size of a diffusion model's PNG."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-12, 13, (side, side, 3), dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


async def fill(store: Store[Recipe], images_dir: Path, side: int) -> None:
    for grid in range(GRIDS):
        recipe = Recipe(
            kind=JobKind.IMAGINE,
            prompt=f"a lighthouse in a storm, study number {grid}",
            negative_prompt="blurry",
            model="black-forest-labs/FLUX.2-klein-4B",
            width=side,
            height=side,
            steps=4,
            guidance=1.0,
            seeds=tuple(range(grid * IMAGES, grid * IMAGES + IMAGES)),
            scheduler="FlowMatchEulerDiscreteScheduler",
        )
        job = await store.admit_job(
            NewJob(
                recipe=recipe,
                guild_id=GUILD,
                channel_id=CHANNEL,
                user_id=MEMBER,
                cost=4,
                age_restricted=False,
                member_name="bench",
            ),
            limit=None,
        )
        paths = [image_path(images_dir, job.id, index) for index in range(IMAGES)]
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for index, path in enumerate(paths):
            picture(side, job.id * 10 + index).save(path, compress_level=1)
        await store.mark_running(job.id)
        await store.mark_done(job.id, image_paths=[str(path) for path in paths], withheld=[], timings={})
        await store.mark_delivered(job.id, 2_000_000_000_000_000 + job.id)


async def load_page(http: aiohttp.ClientSession, base: str) -> tuple[float, int]:
    """Seconds until the page and every thumbnail on it arrived, and how many thumbnails there were."""
    started = time.perf_counter()
    async with http.get(f"{base}/g/{GUILD}") as page:
        assert page.status == 200, page.status
        html = await page.text()
    thumbs = re.findall(r'src="(/g/\d+/thumbs/[^"]+)"', html)

    async def fetch(path: str) -> None:
        async with http.get(base + path) as answer:
            assert answer.status == 200, (path, answer.status)
            await answer.read()

    await asyncio.gather(*(fetch(path) for path in thumbs))
    return time.perf_counter() - started, len(thumbs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def main(runs: int, side: int) -> None:
    with tempfile.TemporaryDirectory(prefix="latentcord-bench-gallery-") as folder:
        images_dir = Path(folder) / "images"
        store = await Store.open(Path(folder) / "bot.sqlite3", recipe=Recipe)
        made = time.perf_counter()
        await fill(store, images_dir, side)
        print(f"{GRIDS} grids of {IMAGES} images at {side} px written in {time.perf_counter() - made:.1f} s")
        token = new_token()
        await store.start_web_session(
            token_hash(token),
            user_id=MEMBER,
            user_name="bench",
            guild_ids=frozenset({GUILD}),
            csrf_token="x",
            ttl_s=3600,
        )
        port = free_port()
        server = GalleryServer(
            store=store,
            service=cast(Any, None),  # every image is on disk: the service is never asked to cut one from its grid
            oauth=DiscordOAuth(
                api_base="http://127.0.0.1:9/api/v10", client_id="1", client_secret=SECRET, redirect_uri="x"
            ),
            signer=CookieSigner(SECRET),
            bot_guilds=lambda: {GUILD: "Bench"},
            images_dir=images_dir,
            host="127.0.0.1",
            port=port,
            public_url=f"http://127.0.0.1:{port}",
        )
        await server.start()
        try:
            connector = aiohttp.TCPConnector(limit_per_host=BROWSER_CONNECTIONS)
            cookie = {SESSION_COOKIE: CookieSigner(SECRET).sign(token)}
            async with aiohttp.ClientSession(connector=connector, cookies=cookie) as http:
                base = f"http://127.0.0.1:{port}"
                first, count = await load_page(http, base)
                later = [(await load_page(http, base))[0] for _ in range(runs)]
        finally:
            await server.stop()
            await store.close()
    ms = [seconds * 1000 for seconds in later]
    print(f"page of {count} thumbnails, first load (thumbnails made): {first * 1000:.0f} ms")
    print(
        f"page of {count} thumbnails, later loads over {runs} runs: min {min(ms):.0f} ms, "
        f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms (goal: under 300 ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--side", type=int, default=1024)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.side))
