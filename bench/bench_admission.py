"""Admission under a burst: 100 members send ``/imagine`` at the same moment.

The real bot, with its real cogs and store, runs against the loopback Discord in
``tests/fakediscord`` on ``builtin:tiny``. Printed, per run: the time from Discord
sending each interaction to the bot's first answer (what Discord's 3-second window
measures), as p50, p99 and max, and how many first answers were the slow-path
ephemeral defer. Goal on a 2-core CPU host: p99 < 0.5 s, max < 1 s, no defers.

    python bench/bench_admission.py [--members 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._tiny import tiny_settings
from bot.app import LatentcordBot
from bot.runtime.core import open_core
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from tests.fakediscord.fixtures import running_client
from tests.fakediscord.server import FakeDiscord


class _NoNsfw:
    def nsfw_scores(self, images: object) -> list[float]:
        return [0.0] * len(images)  # type: ignore[arg-type]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def one_run(engine: DiffusionEngine, folder: Path, members: int) -> tuple[list[float], int]:
    import discord.gateway
    import discord.http
    import yarl

    fake = FakeDiscord()
    await fake.start()
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        world = fake.add_standard_guild()
        people = [fake.add_member(world.guild, f"user{n}") for n in range(members)]
        settings = tiny_settings(
            folder, daily_credits=100, queue_max_total=max(100, members), batch_max_images=8, preview_interval_s=1.5
        )
        async with open_core(settings, engine=engine, classifier=_NoNsfw()) as core:
            bot = LatentcordBot(settings=settings, store=core.store, worker=core.worker, service=core.service)
            async with running_client(bot, fake, token=settings.discord_token):
                interactions = await asyncio.gather(
                    *(
                        fake.run_slash(
                            "imagine",
                            {"prompt": f"a fox number {n}", "count": 1, "steps": 1},
                            user=member,
                            channel=world.text_channel,
                        )
                        for n, member in enumerate(people)
                    )
                )
                answers = await asyncio.gather(*(ix.wait_for_response(timeout=30) for ix in interactions))
                await core.worker.stop()
    finally:
        await fake.stop()
    return [answer.elapsed for answer in answers], sum(answer.ephemeral for answer in answers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=Path(tmp) / "models"))
        engine.load(TINY_MODEL_ID)
        print(f"admission of {args.members} simultaneous /imagine (first answer after INTERACTION_CREATE)")
        for run in range(args.runs):
            folder = Path(tmp) / f"run{run}"
            elapsed, deferred = await one_run(engine, folder, args.members)
            print(
                f"  run {run + 1}: p50 {statistics.median(elapsed) * 1000:6.0f} ms  "
                f"p99 {_percentile(elapsed, 0.99) * 1000:6.0f} ms  max {max(elapsed) * 1000:6.0f} ms  "
                f"slow-path defers {deferred}"
            )


if __name__ == "__main__":
    asyncio.run(main())
