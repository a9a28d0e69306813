"""The GPU benchmark on real-size architectures: bare diffusers, the worker, and the whole bot, side by side.

    python bench/bench_gpu.py --arch sd15|sdxl|klein|zimage --device cuda|cpu [--steps 25] [--compile auto|off]
                              [--members 8,16] [--compile-wait-s 1200]

For ``sd15`` and ``sdxl`` it builds an SD1.5- or SDXL-architecture pipeline with random weights
(``bench/_architectures.py``: the published configurations on CUDA, the same blocks at a small width on
a CPU, where the run is a smoke test), saves it, and runs each part in a process of its own:

  unet     one UNet call of 4 images with guidance (8 rows): FLOP counted, time, TFLOP/s, and its
           fraction of an 8192^3 bf16 matmul measured in the same process (1024^3 fp32 on a CPU)
  bare     bare diffusers calls of 1, 4 and 8 images: images/s
  worker   the bot's dispatcher and a worker process (SD_COMPILE as given), jobs of 4 images in
           batches of 8: images/s, in rounds until two agree within 5% (compiling buckets warm up)
  bot      the real ``python -m bot`` against the loopback Discord: 8 and 16 members send /imagine
           at once (4 images each): images delivered per second; then the idle /imagine-to-grid time

For ``klein`` (FLUX.2 [klein] 4B) and ``zimage`` (Z-Image-Turbo) nothing is saved (their random-weight
pipelines would be 16 and 20 GB on disk): each phase builds what it measures in memory on the device, in
bf16 (``flow_denoiser``, ``flow_pipeline``), at 1024 px and the family's steps (4, 8) on CUDA:

  denoiser  one denoising step, a transformer call, of 1 and 4 images with the pipeline's own inputs (klein:
            4096 packed latent tokens of 128 channels and the prompt's 512 tokens of 3 x 2560, with their 4-axis
            positions, the timestep / 1000, no guidance; Z-Image: lists of 16 x 1 x 128 x 128 latents and of
            64 x 2560 caption features): FLOP counted, time, TFLOP/s, the matmul fraction, peak memory
  pipeline  txt2img calls of 1 and 4 images (Qwen3-4B text encoder, the transformer, the family's VAE,
            PIL images out, as the worker calls it): seconds, images/s, peak memory

The UNet phase, the worker and the bot are Stable Diffusion's here (the worker's fast path compiles a UNet,
compel weights CLIP prompts, and the worker and the bot load a model folder); a flow run says so in a line.

Figures go in the README with the date, the GPU and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
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

from bench._architectures import FLOW_ARCHS, build, flow_denoiser, flow_pipeline, parameters
from bench.count_flops import FLOW_PATCH, KLEIN_TEXT_TOKENS, VAE_FACTOR, ZIMAGE_CAPTION_TOKENS
from models.families import FAMILIES
from models.loading import default_dtype
from models.types import ModelFamily

PROMPT = "a lighthouse on a cliff in a storm, oil painting"

#: Each ``--arch`` and the family whose defaults (side, steps, guidance) it runs with.
ARCH_FAMILIES: dict[str, ModelFamily] = {
    "sd15": ModelFamily.SD1,
    "sdxl": ModelFamily.SDXL,
    **{arch: spec.family for arch, spec in FLOW_ARCHS.items()},
}
#: What a flow run leaves out, and why, one printed line each.
FLOW_SKIPPED = (
    ("the UNet phase", "this family's denoiser is a transformer, which the step above measures"),
    (
        "the worker and bot phases",
        "they load a model folder, and this random-weight pipeline would be {gb:.3g} GB written to disk "
        "(its builtin tiny model runs through them in tests/test_flow_families.py)",
    ),
    ("--compile", "the worker's fast path compiles a UNet; the transformer families run eager"),
    ("compel", "weighted and long prompts are Stable Diffusion's; the Qwen3 encoders read a prompt as it is"),
)


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


def scale_of(device: torch.device) -> str:
    return "full" if device.type == "cuda" else "smoke"


def flow_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU, as the engine holds these families (fp16 overflows in them); fp32 on a CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def matmul_rate(device: torch.device) -> float:
    """TFLOP/s of an 8192^3 bf16 matmul on a GPU (1024^3 fp32 on a CPU), the yardstick of the denoisers' rates."""
    side = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(side, side, device=device, dtype=dtype) for _ in range(2))
    seconds = timed(device, lambda: a @ b, 10)
    return 2 * side**3 / seconds / 1e12


def one_thread_on_cpu(device: torch.device) -> None:
    """A smoke test's tiny widths gain nothing from threads, and on a shared CPU they spin against other processes'
    (a tenth of the speed when the cores are busy), so a flow phase on a CPU keeps to one."""
    if device.type == "cpu":
        torch.set_num_threads(1)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float:
    """The most GPU memory allocated since ``reset_peak``; on a CPU, the process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


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

    matmul_tflops = matmul_rate(device)

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


def denoiser_inputs(arch: str, transformer: Any, images: int, side: int, device: torch.device) -> dict[str, Any]:
    """One denoising step's inputs for ``images`` images at ``side`` px, shaped as the family's pipeline makes them."""
    dtype = transformer.dtype
    timestep = torch.full((images,), 0.5, device=device)  # the pipelines pass the flow's time in [0, 1]
    if arch == "zimage":
        # ZImagePipeline: one (C, 1, H/8, W/8) latent and one (tokens, 2560) caption per image, in lists.
        latent = side // VAE_FACTOR
        channels, width = transformer.config.in_channels, transformer.config.cap_feat_dim
        return {
            "x": [torch.randn(channels, 1, latent, latent, device=device, dtype=dtype) for _ in range(images)],
            "t": timestep,
            "cap_feats": [torch.randn(ZIMAGE_CAPTION_TOKENS, width, device=device, dtype=dtype) for _ in range(images)],
        }
    # Flux2KleinPipeline: 2x2-patched latents packed into tokens, the prompt padded to 512 tokens of three stacked
    # Qwen3 layers, positions on four axes (T, H, W, L): the image's grid, and the prompt along L.
    grid = side // (VAE_FACTOR * FLOW_PATCH)
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    zeros = torch.zeros(grid * grid, dtype=torch.long)
    image_ids = torch.stack([zeros, rows.flatten(), columns.flatten(), zeros], dim=-1)
    text_zeros = torch.zeros(KLEIN_TEXT_TOKENS, dtype=torch.long)
    text_ids = torch.stack([text_zeros, text_zeros, text_zeros, torch.arange(KLEIN_TEXT_TOKENS)], dim=-1)
    config = transformer.config
    return {
        "hidden_states": torch.randn(images, grid * grid, config.in_channels, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(
            images, KLEIN_TEXT_TOKENS, config.joint_attention_dim, device=device, dtype=dtype
        ),
        "timestep": timestep,
        "img_ids": image_ids.expand(images, -1, -1).to(device),
        "txt_ids": text_ids.expand(images, -1, -1).to(device),
        "guidance": None,
    }


def phase_denoiser(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    one_thread_on_cpu(device)
    matmul_tflops = matmul_rate(device)
    # 1. FLOPs of one image's step, counted on the meta device, where attention is matmuls the counter sees (it
    #    misses a CPU's fused attention kernel): the count models/compute.py prices, from bench/count_flops.py.
    meta = torch.device("meta")
    shadow: Any = flow_denoiser(args.arch, scale_of(device), device=meta, dtype=flow_dtype(device))
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        shadow(**denoiser_inputs(args.arch, shadow, 1, args.size, meta), return_dict=False)

    # 2. The transformer itself, timed at 1 and 4 images, with the peak memory of each.
    transformer: Any = flow_denoiser(args.arch, scale_of(device), device=device, dtype=flow_dtype(device)).eval()
    figures = {
        "matmul_tflops": matmul_tflops,
        "params": float(parameters(transformer)),
        "weights_gib": sum(p.numel() * p.element_size() for p in transformer.parameters()) / 2**30,
        "tokens": (args.size // (VAE_FACTOR * FLOW_PATCH)) ** 2,  # both see the latents as 2x2 patches
        "text_tokens": KLEIN_TEXT_TOKENS if args.arch == "klein" else ZIMAGE_CAPTION_TOKENS,
        "tflop": counter.get_total_flops() / 1e12,
    }
    with torch.inference_mode():
        for images in (1, 4):
            inputs = denoiser_inputs(args.arch, transformer, images, args.size, device)

            def step(inputs: dict[str, Any] = inputs) -> Any:
                return transformer(**inputs, return_dict=False)

            reset_peak(device)
            seconds = timed(device, step, 10 if device.type == "cuda" else 2)
            figures[f"step_{images}_ms"] = seconds * 1000
            figures[f"tflops_{images}"] = images * figures["tflop"] / seconds
            figures[f"peak_{images}_gib"] = peak_gib(device)
    return figures


def phase_pipeline(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    import diffusers
    import transformers

    one_thread_on_cpu(device)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    entry = FAMILIES[ARCH_FAMILIES[args.arch]]
    with tempfile.TemporaryDirectory(prefix="latentcord-flow-bench-") as scratch:
        pipeline = flow_pipeline(args.arch, scale_of(device), device, flow_dtype(device), Path(scratch))
    parts = {"text_encoder": pipeline.text_encoder, "transformer": pipeline.transformer, "vae": pipeline.vae}
    figures = {f"{name}_params": float(parameters(part)) for name, part in parts.items()}
    figures["weights_gb"] = (
        sum(p.numel() * p.element_size() for part in parts.values() for p in part.parameters()) / 1e9
    )

    def txt2img(images: int) -> Any:
        """As the worker calls it (``models.operations.call_arguments``): the family's guidance, a negative prompt
        only where its pipeline reads one, one generator per image, PIL images out."""
        negative = {"negative_prompt": [""] * images} if entry.negative_prompt else {}
        return pipeline(
            prompt=[PROMPT] * images,
            **negative,
            num_inference_steps=args.steps,
            guidance_scale=entry.guidance,
            width=args.size,
            height=args.size,
            generator=[torch.Generator(device=device).manual_seed(n) for n in range(images)],
            output_type="pil",
        )

    with torch.inference_mode():
        for images in (1, 4):
            reset_peak(device)
            seconds = timed(device, functools.partial(txt2img, images), args.repeat)
            figures[f"pipeline_{images}"] = images / seconds
            figures[f"pipeline_{images}_s"] = seconds
            figures[f"pipeline_peak_{images}_gib"] = peak_gib(device)
    return figures


PHASES: dict[str, Callable[[argparse.Namespace, torch.device], Any]] = {
    "unet": phase_unet,
    "bare": phase_bare,
    "worker": phase_worker,
    "bot": phase_bot,
    "denoiser": phase_denoiser,
    "pipeline": phase_pipeline,
}


def run_phase(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, *args.passed]
    output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def as_parameters(number: float) -> str:
    return f"{number / 1e9:.2f} G" if number >= 1e9 else f"{number / 1e6:.3g} M"


def report_flow(args: argparse.Namespace, cuda: bool, scale: str) -> None:
    """klein's or Z-Image's run: the denoiser and the whole pipeline, each built in memory by its own process."""
    entry = FAMILIES[ARCH_FAMILIES[args.arch]]
    where = torch.cuda.get_device_name() if cuda else "CPU (smoke test: small widths)"
    memory = "GPU memory" if cuda else "resident memory"
    print(
        f"{args.arch} architecture ({scale}): {entry.label}, random weights in {'bf16' if cuda else 'fp32'}, "
        f"on {where}; {args.size} px, {args.steps} steps, FlowMatch Euler, guidance {entry.guidance:g}"
    )

    step = run_phase("denoiser", args)
    matmul = step["matmul_tflops"]
    print(
        f"  transformer {as_parameters(step['params'])} parameters ({step['weights_gib']:.2f} GiB); a step at "
        f"{args.size} px reads {step['tokens']:.0f} image and {step['text_tokens']:.0f} text tokens an image: "
        f"{step['tflop']:.3g} TFLOP"
    )
    print(
        f"  a step (one transformer call) of 1 / 4 images: {step['step_1_ms']:.1f} / {step['step_4_ms']:.1f} ms = "
        f"{step['tflops_1']:.3g} / {step['tflops_4']:.3g} TFLOP/s, {step['tflops_1'] / matmul:.0%} / "
        f"{step['tflops_4'] / matmul:.0%} of the measured matmul rate ({matmul:.3g} TFLOP/s); "
        f"peak {memory} {step['peak_1_gib']:.2f} / {step['peak_4_gib']:.2f} GiB"
    )

    whole = run_phase("pipeline", args)
    shares = [args.steps * step[f"step_{n}_ms"] / 1000 / whole[f"pipeline_{n}_s"] for n in (1, 4)]
    print(
        f"  whole pipeline, txt2img of 1 / 4 images a call: {whole['pipeline_1_s']:.2f} / "
        f"{whole['pipeline_4_s']:.2f} s = {whole['pipeline_1']:.2f} / {whole['pipeline_4']:.2f} images/s, "
        f"the transformer's steps about {shares[0]:.0%} / {shares[1]:.0%} of it; "
        f"peak {memory} {whole['pipeline_peak_1_gib']:.2f} / {whole['pipeline_peak_4_gib']:.2f} GiB"
    )
    print(
        f"  (built in memory: text encoder {as_parameters(whole['text_encoder_params'])}, transformer "
        f"{as_parameters(whole['transformer_params'])}, VAE {as_parameters(whole['vae_params'])} parameters, "
        f"{whole['weights_gb']:.3g} GB)"
    )
    for what, why in FLOW_SKIPPED:
        print(f"  skipped, {what}: {why.format(gb=whole['weights_gb'])}")


def report_sd(args: argparse.Namespace, cuda: bool, scale: str) -> None:
    """SD1.5's or SDXL's run: the pipeline saved once, then the UNet, bare diffusers, the worker and the bot."""
    with tempfile.TemporaryDirectory(prefix="latentcord-gpu-bench-") as tmp:
        folder = build(args.arch, scale, Path(tmp) / f"{args.arch}-{scale}")
        cache = Path(tmp) / "cache"
        args.passed += ["--model-dir", str(folder), "--cache-dir", str(cache)]
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
        if args.size != FAMILIES[ARCH_FAMILIES[args.arch]].side:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=tuple(ARCH_FAMILIES), default="sd15")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--steps", type=int, help="denoising steps (default the family's on CUDA: 25, 25, 4, 8; 2 on a CPU)"
    )
    parser.add_argument("--size", type=int, help="image side (default the model's own: 512 for sd15, else 1024)")
    parser.add_argument("--compile", choices=("auto", "off"), default="auto", help="SD_COMPILE for the worker and bot")
    parser.add_argument("--members", default=None, help="comma-separated wave sizes (default 8,16; 2 on a CPU)")
    parser.add_argument("--jobs", type=int, default=16, help="4-image jobs per worker round")
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed calls per bare or flow pipeline figure (5; 1 on a CPU)"
    )
    parser.add_argument("--compile-wait-s", type=float, default=None, help="rounds go on this long while compiling")
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument("--phase", choices=tuple(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    entry = FAMILIES[ARCH_FAMILIES[args.arch]]
    args.steps = args.steps or (entry.steps if cuda else 2)
    args.size = args.size or ((entry.side or 512) if cuda else 64)
    args.members = [int(n) for n in (args.members or ("8,16" if cuda else "2")).split(",")]
    args.repeat = args.repeat or (5 if cuda else 1)
    args.compile_wait_s = args.compile_wait_s if args.compile_wait_s is not None else (1200.0 if cuda else 0.0)
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but no CUDA GPU is visible; --device cpu runs the smoke test")
    if args.size % entry.size_multiple:
        raise SystemExit(f"--size must be a multiple of {entry.size_multiple} for {args.arch}, not {args.size}")

    if args.phase:
        device = torch.device(args.device)
        result = PHASES[args.phase](args, device)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        print(json.dumps(result))
        return

    args.passed = [
        *("--arch", args.arch, "--device", args.device, "--steps", str(args.steps), "--size", str(args.size)),
        *("--compile", args.compile, "--members", ",".join(map(str, args.members)), "--jobs", str(args.jobs)),
        *("--repeat", str(args.repeat), "--compile-wait-s", str(args.compile_wait_s)),
        *("--max-rounds", str(args.max_rounds)),
    ]
    scale = "full" if cuda else "smoke"
    (report_flow if args.arch in FLOW_ARCHS else report_sd)(args, cuda, scale)


if __name__ == "__main__":
    main()
