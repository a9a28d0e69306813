"""The GPU benchmark on real-size architectures: bare diffusers, the worker, and the whole bot, side by side.

    python bench/bench_gpu.py --arch sd15|sdxl --device cuda|cpu [--steps 25] [--compile auto|off]
                              [--members 8,16] [--compile-wait-s 1200]

It builds an SD1.5- or SDXL-architecture pipeline with random weights (``bench/_architectures.py``:
the published configurations on CUDA, the same blocks at a small width on a CPU, where the run is
a smoke test), saves it, and runs each part in a process of its own:

  unet     one UNet call of 4 images with guidance (8 rows): FLOP counted, time, TFLOP/s, and its
           fraction of an 8192^3 bf16 matmul measured in the same process (1024^3 fp32 on a CPU)
  bare     bare diffusers calls of 1, 4 and 8 images: images/s
  worker   the bot's dispatcher and a worker process (SD_COMPILE as given), jobs of 4 images in
           batches of 8: images/s, in rounds until two agree within 5% (compiling buckets warm up)
  bot      the real ``python -m bot`` against the loopback Discord: 8 and 16 members send /imagine
           at once (4 images each): images delivered per second; then the idle /imagine-to-grid time

Figures go in the README with the date, the GPU and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bench._architectures import build, parameters
from models.loading import default_dtype

PROMPT = "a lighthouse on a cliff in a storm, oil painting"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device: torch.device, call: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``call`` over ``repeat`` runs, after one warm-up."""
    call()
    sync(device)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load(folder: Path, device: torch.device) -> Any:
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    index = json.loads((folder / "model_index.json").read_text())
    pipeline = getattr(diffusers, index["_class_name"]).from_pretrained(folder, dtype=default_dtype(device))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def call_pipeline(pipeline: Any, images: int, size: int, steps: int, device: torch.device, output: str = "pil") -> Any:
    generators = [torch.Generator(device=device).manual_seed(n) for n in range(images)]
    return pipeline(
        prompt=[PROMPT] * images,
        negative_prompt=[""] * images,
        num_inference_steps=steps,
        guidance_scale=7.0,
        width=size,
        height=size,
        generator=generators,
        output_type=output,
    )


# -- the phases, each in a process of its own -------------------------------------------------


def phase_unet(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    side = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(side, side, device=device, dtype=dtype) for _ in range(2))
    matmul_s = timed(device, lambda: a @ b, 10)
    matmul_tflops = 2 * side**3 / matmul_s / 1e12

    pipeline = load(args.model_dir, device)
    unet = pipeline.unet
    latent = args.size // pipeline.vae_scale_factor
    rows = 8  # 4 images, each with its unconditional twin
    sample = torch.randn(rows, 4, latent, latent, device=device, dtype=unet.dtype)
    context = torch.randn(rows, 77, unet.config.cross_attention_dim, device=device, dtype=unet.dtype)
    extra: dict[str, Any] = {}
    if unet.config.addition_embed_type == "text_time":
        text_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(rows, text_dim, device=device, dtype=unet.dtype),
            "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]] * rows, device=device),
        }
    step = torch.tensor(500.0, device=device)

    with torch.inference_mode():

        def forward() -> Any:
            return unet(sample, step, encoder_hidden_states=context, return_dict=False, **extra)

        counter = FlopCounterMode(display=False)
        with counter:
            forward()
        flop = counter.get_total_flops()
        unet_s = timed(device, forward, 10 if device.type == "cuda" else 2)
    return {
        "matmul_tflops": matmul_tflops,
        "unet_params_m": parameters(unet) / 1e6,
        "unet_tflop": flop / 1e12,
        "unet_ms": unet_s * 1000,
        "unet_tflops": flop / unet_s / 1e12,
    }


def phase_bare(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    pipeline = load(args.model_dir, device)
    figures: dict[str, float] = {}
    with torch.inference_mode():
        for images in (1, 4, 8):
            seconds = timed(
                device, lambda n=images: call_pipeline(pipeline, n, args.size, args.steps, device), args.repeat
            )
            figures[f"bare_{images}"] = images / seconds
            figures[f"bare_{images}_s"] = seconds
    return figures


async def phase_worker(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from bench.bench_worker import through
    from bot.gpu.config import WorkerConfig
    from bot.jobs.generation import work_order
    from bot.workers.dispatch import Dispatcher
    from bot.workers.processes import ProcessTransport
    from bot.workers.protocol import WorkOrder
    from tests.helpers import MemoryAttempts
    from tests.recipes import a_recipe

    model = str(args.model_dir)
    config = WorkerConfig(
        worker_id="bench",
        device=device.type,
        cache_dir=args.cache_dir,
        models=(model,),
        max_batch_images=8,
        compile=args.compile,
    )
    worker = Dispatcher(ProcessTransport([config]), MemoryAttempts(), max_per_user=100, max_total=200)
    await worker.start()
    try:
        preset = await worker.preset(model)

        def orders(round_number: int) -> list[WorkOrder]:
            return [
                work_order(
                    round_number * 1000 + n,
                    n,
                    a_recipe(
                        prompt=f"{PROMPT}, take {n}",
                        model=model,
                        width=args.size,
                        height=args.size,
                        steps=args.steps,
                        guidance=preset.guidance,
                        seeds=tuple(range(4 * n, 4 * n + 4)),
                    ),
                    classify=True,
                )
                for n in range(args.jobs)
            ]

        rates = await until_steady(args, lambda number: through(worker, orders(number)), 4 * args.jobs)
    finally:
        await worker.stop()
    return {"worker_rounds": rates}


async def until_steady(args: argparse.Namespace, one_round: Callable[[int], Any], images: int) -> list[float]:
    """Images/s of rounds, until two in a row agree within 5% or ``--compile-wait-s`` has passed."""
    deadline = time.monotonic() + args.compile_wait_s
    rates: list[float] = []
    number = 0
    while True:
        number += 1
        rates.append(images / await one_round(number))
        print(f"    round {number}: {rates[-1]:.2f} images/s", file=sys.stderr, flush=True)
        steady = len(rates) >= 2 and abs(rates[-1] - rates[-2]) <= 0.05 * rates[-2]
        if steady or time.monotonic() >= deadline or number >= args.max_rounds:
            return rates


async def phase_bot(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import discord.gateway
    import discord.http
    import yarl

    from tests.fakediscord.server import FakeDiscord
    from tests.helpers import has_grid

    fake = FakeDiscord()
    await fake.start()
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    world = fake.add_standard_guild()
    people = [fake.add_member(world.guild, f"member{n}") for n in range(max(args.members))]
    data = Path(tempfile.mkdtemp(prefix="latentcord-bench-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": "fake-bot-token",
        "SD_MODEL": str(args.model_dir),
        "DEVICE": device.type,
        "SD_COMPILE": args.compile,
        "DATABASE_PATH": str(data / "bot.sqlite3"),
        "IMAGES_DIR": str(data / "images"),
        "MODEL_CACHE_DIR": str(args.cache_dir),
        "DAILY_CREDITS": "1000000",
        "QUEUE_MAX_TOTAL": "1000",
        "BATCH_MAX_IMAGES": "8",
        "DISCORD_API_URL": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "LOG_LEVEL": "INFO",
    }
    log = (data / "bot.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=data, env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    figures: dict[str, Any] = {}
    try:
        await fake.wait_until(lambda: fake.gateway.active(), timeout=600, what="the bot's READY")

        async def wave(count: int, tag: str) -> float:
            """Seconds from ``count`` members sending /imagine at once to the last grid posted."""
            started = time.perf_counter()
            interactions = await asyncio.gather(
                *(
                    fake.run_slash(
                        "imagine",
                        {"prompt": f"{PROMPT}, {tag} {n}", "steps": args.steps},
                        user=member,
                        channel=world.text_channel,
                    )
                    for n, member in enumerate(people[:count])
                )
            )
            await asyncio.gather(*(ix.wait_for_message(has_grid, timeout=3600) for ix in interactions))
            return time.perf_counter() - started

        for count in args.members:
            rates = await until_steady(args, lambda number, c=count: wave(c, f"{c} members, round {number}"), 4 * count)
            figures[f"bot_{count}_rounds"] = rates
        idle = []
        for n in range(3):
            idle.append(await wave(1, f"alone {n}"))
        figures["idle_s"] = statistics.median(idle)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 120)
        except TimeoutError:
            process.kill()
        log.close()
        await fake.stop()
    return figures


PHASES: dict[str, Callable[[argparse.Namespace, torch.device], Any]] = {
    "unet": phase_unet,
    "bare": phase_bare,
    "worker": phase_worker,
    "bot": phase_bot,
}


def run_phase(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, *args.passed]
    output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("sd15", "sdxl"), default="sd15")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="denoising steps (default 25 on CUDA, 2 on a CPU)")
    parser.add_argument("--size", type=int, help="image side for unet/bare/worker (default the model's own)")
    parser.add_argument("--compile", choices=("auto", "off"), default="auto", help="SD_COMPILE for the worker and bot")
    parser.add_argument("--members", default=None, help="comma-separated wave sizes (default 8,16; 2 on a CPU)")
    parser.add_argument("--jobs", type=int, default=16, help="4-image jobs per worker round")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per bare figure (5; 1 on a CPU)")
    parser.add_argument("--compile-wait-s", type=float, default=None, help="rounds go on this long while compiling")
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument("--phase", choices=tuple(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.steps = args.steps or (25 if cuda else 2)
    args.size = args.size or ((1024 if args.arch == "sdxl" else 512) if cuda else 64)
    args.members = [int(n) for n in (args.members or ("8,16" if cuda else "2")).split(",")]
    args.repeat = args.repeat or (5 if cuda else 1)
    args.compile_wait_s = args.compile_wait_s if args.compile_wait_s is not None else (1200.0 if cuda else 0.0)
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but no CUDA GPU is visible; --device cpu runs the smoke test")

    if args.phase:
        device = torch.device(args.device)
        result = PHASES[args.phase](args, device)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="latentcord-gpu-bench-") as tmp:
        scale = "full" if cuda else "smoke"
        folder = build(args.arch, scale, Path(tmp) / f"{args.arch}-{scale}")
        cache = Path(tmp) / "cache"
        args.passed = [
            *("--arch", args.arch, "--device", args.device, "--steps", str(args.steps), "--size", str(args.size)),
            *("--compile", args.compile, "--members", ",".join(map(str, args.members)), "--jobs", str(args.jobs)),
            *("--repeat", str(args.repeat), "--compile-wait-s", str(args.compile_wait_s)),
            *("--max-rounds", str(args.max_rounds), "--model-dir", str(folder), "--cache-dir", str(cache)),
        ]
        where = torch.cuda.get_device_name() if cuda else "CPU (smoke test: small widths)"
        print(
            f"{args.arch} architecture ({scale}), random weights, on {where}; {args.steps} steps, Euler a, guidance 7"
        )

        unet = run_phase("unet", args)
        print(
            f"  UNet {unet['unet_params_m']:.1f} M parameters, 8 rows at {args.size} px: {unet['unet_tflop']:.3g} TFLOP "
            f"in {unet['unet_ms']:.1f} ms = {unet['unet_tflops']:.3g} TFLOP/s, "
            f"{unet['unet_tflops'] / unet['matmul_tflops']:.0%} of the measured matmul rate "
            f"({unet['matmul_tflops']:.3g} TFLOP/s)"
        )
        bare = run_phase("bare", args)
        print(
            f"  bare diffusers, images/s at 1 / 4 / 8 a call: {bare['bare_1']:.2f} / {bare['bare_4']:.2f} / "
            f"{bare['bare_8']:.2f} (a 4-image call takes {bare['bare_4_s']:.2f} s)"
        )
        worker = run_phase("worker", args)
        rounds = worker["worker_rounds"]
        print(
            f"  the worker (SD_COMPILE={args.compile}), {args.jobs} jobs of 4, batches of 8: {rounds[-1]:.2f} images/s "
            f"({rounds[-1] / bare['bare_8']:.2f}x bare at 8); rounds: {', '.join(f'{r:.2f}' for r in rounds)}"
        )
        bot = run_phase("bot", args)
        if args.size != (1024 if args.arch == "sdxl" else 512):
            print(f"  (the bot makes the model's own size; the figures above are at {args.size} px)")
        for count in args.members:
            rounds = bot[f"bot_{count}_rounds"]
            print(
                f"  the bot, {count} member{'s' * (count != 1)} at once: {rounds[-1]:.2f} images/s delivered "
                f"({rounds[-1] / bare['bare_8']:.2f}x bare at 8); rounds: {', '.join(f'{r:.2f}' for r in rounds)}"
            )
        print(
            f"  idle /imagine to grid posted: {bot['idle_s']:.2f} s, the bare 4-image call "
            f"+{bot['idle_s'] - bare['bare_4_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
