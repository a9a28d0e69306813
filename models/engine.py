"""The diffusion engine: one resident pipeline, batches of seeded images in, a ``BatchOutput`` out.

Everything here is blocking and runs in the worker's single GPU thread. Each
call gets its own scheduler and its own pipeline object (``from_pipe`` shares
the weights, not the state), and each image its own seeded generator, so an
image depends only on its task and the batch's spec, never on what else was in
the batch, how the batch was split, or what ran before it.

What differs between operations (pipeline class, arguments, checks) lives in
``models.operations``; the latent preview in ``models.preview``; turning a model
reference into a pipeline in ``models.loading``. Beside the resident pipeline, the
engine keeps a bounded cache of components (``models.components``: ControlNets,
upscalers, captioners); an operation that runs one of those instead of a pipeline
(a ``ComponentOperation``) leaves the resident model as it is.
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from models import preview
from models.adapters import ResidentAdapters
from models.components import ComponentCache, ComponentKey, ComponentKind, ComponentLoader
from models.errors import GenerationInterrupted, GenerationOutOfMemory, ModelUnavailable
from models.families import FAMILIES
from models.fastpath import Bucket, Compiler, FastPath, buckets_for, default_compiler, padded, use_compile_cache
from models.loading import default_dtype, load_pipeline, resolve_model_source
from models.operations import (
    ComponentOperation,
    TaskOutputs,
    call_arguments,
    check_batch,
    operation_for,
    pipeline_for_call,
    pipeline_operation_for,
    super_resolution,
    tiled,
)
from models.operations.base import check_sources
from models.presets import preset_for
from models.prompts import weighted_arguments
from models.tokens import tokenizer_files
from models.types import (
    BatchOutput,
    BatchSpec,
    GenerationBatch,
    ImageTask,
    ModelFamily,
    ModelPreset,
    Operation,
    StepCallback,
    StepProgress,
)

if TYPE_CHECKING:
    from models.pipeline import Pipeline

log = logging.getLogger(__name__)


class _SameDtypeCastWarningFilter(logging.Filter):
    """Drops diffusers' "should be kept in float32: []" warning.

    ``from_pipe`` must be given the base pipeline's dtype (otherwise it casts the
    shared weights to fp32), and diffusers then warns about that no-op cast even
    when no module needs fp32, once per call. Real warnings (a non-empty list)
    still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


class _UnetOnlyLoraFilter(logging.Filter):
    """Drops diffusers' note that a LoRA has no text-encoder layers, which most LoRAs do not: once per load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No LoRA keys associated to" not in record.getMessage()


def _disable_library_progress_bars() -> None:
    """Progress is the worker's to report (as events); the libraries' own bars would only clutter logs."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _silence_same_dtype_cast_warning() -> None:
    target = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(existing, _SameDtypeCastWarningFilter) for existing in target.filters):
        target.addFilter(_SameDtypeCastWarningFilter())
    lora = logging.getLogger("diffusers.loaders.lora_base")
    if not any(isinstance(existing, _UnetOnlyLoraFilter) for existing in lora.filters):
        lora.addFilter(_UnetOnlyLoraFilter())


#: GPU memory per resident model, for the default of MODELS_RESIDENT: an SDXL or FLUX.2 klein 4B model and its
#: batches' activations fit in 24 GiB; one more model for each 24 GiB more.
GIB_PER_RESIDENT_MODEL = 24


def default_models_resident(device: torch.device) -> int:
    """How many models a worker keeps loaded when MODELS_RESIDENT is not set: one per 24 GiB of GPU memory
    (at least one, at most four); one on a CPU."""
    if device.type != "cuda":
        return 1
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return max(1, min(4, int(total // GIB_PER_RESIDENT_MODEL)))


def own_size(preset: ModelPreset) -> Sequence[tuple[int, int]]:
    return ((preset.width, preset.height),)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    device: str = "auto"  # "auto" | "cuda" | "cpu"
    cache_dir: Path = Path("data/models")
    # The compiled fast path (models.fastpath): "auto" where CUDA is, "off", or "on" on any
    # device (the benchmark's CPU mode and tests).
    compile: str = "off"
    max_batch_images: int = 8  # the largest bucket compiled
    # The sizes to compile buckets for, the model's default first (the bot's aspect presets).
    bucket_sizes: Callable[[ModelPreset], Sequence[tuple[int, int]]] = own_size
    compiler: Compiler = default_compiler
    lora_cache: int = 8  # how many LoRAs stay loaded in a model; the least recently used go first
    # Components beside the model (models.components): the loader of each kind this worker can load, and how
    # many stay loaded at once, the least recently used dropped first.
    # Given ones stand in for the defaults (``default_component_loaders``: spandrel upscalers, Florence-2).
    component_loaders: Mapping[ComponentKind, ComponentLoader] = field(default_factory=dict)
    component_cache: int = 2
    upscaler_tile: int = 512  # UPSCALER_TILE: the side of the tiles an upscaler runs on; 0: whole images
    # How many models stay loaded at once (MODELS_RESIDENT); the least recently used is freed first. 0: by the
    # GPU's memory (``default_models_resident``).
    models_resident: int = 1


def default_component_loaders(config: EngineConfig) -> dict[ComponentKind, ComponentLoader]:
    """The components every worker can load: an upscaler net from a .safetensors file (tiled as configured), and a
    Florence-2 captioner (a hub id, a folder, or ``builtin:tiny-florence2`` built in the cache)."""
    from models.captioners import captioner_loader
    from models.upscalers import upscaler_loader

    return {
        ComponentKind.UPSCALER: upscaler_loader(config.upscaler_tile),
        ComponentKind.CAPTIONER: captioner_loader(config.cache_dir),
    }


@dataclass(frozen=True, slots=True)
class _Resident:
    """A loaded model: its name, weights and defaults."""

    model: str
    pipeline: Pipeline
    preset: ModelPreset
    fast: FastPath | None  # None: every call eager
    adapters: ResidentAdapters  # the LoRAs and embeddings loaded into it


@dataclass(frozen=True, slots=True)
class _TokenCounter:
    tokenizer: Any
    lock: threading.Lock


class _InterruptRequested(Exception):
    """Raised inside the step callback to leave the denoising loop at once.

    Setting diffusers' own ``_interrupt`` flag only skips the remaining steps;
    the pipeline would still decode latents nobody will look at. Raising
    ends the call immediately; the per-call pipeline is discarded anyway.
    """


def _resolve_device(name: str) -> torch.device:
    match name:
        case "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        case "cuda":
            if not torch.cuda.is_available():
                raise ModelUnavailable("DEVICE is cuda but no CUDA GPU is visible to this process.")
            return torch.device("cuda")
        case "cpu":
            return torch.device("cpu")
        case _:
            raise ModelUnavailable(f"DEVICE must be auto, cuda or cpu, not {name}.")


class DiffusionEngine:
    """Owns the loaded pipelines (``models_resident`` at most) and runs batches on them, in the caller's thread."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._device = _resolve_device(config.device)
        self._dtype = default_dtype(self._device)
        if config.compile not in ("auto", "on", "off"):
            raise ModelUnavailable(f"SD_COMPILE must be auto or off, not {config.compile}.")
        self._compiles = config.compile == "on" or (config.compile == "auto" and self._device.type == "cuda")
        if self._compiles:
            use_compile_cache(config.cache_dir)
        self._models_resident = config.models_resident or default_models_resident(self._device)
        # The loaded models, the least recently used first.
        self._residents: OrderedDict[str, _Resident] = OrderedDict()
        # A private tokenizer copy per model ever loaded, so prompts can be measured from any
        # thread while the GPU thread uses (and reconfigures) the pipeline's own tokenizer.
        self._token_counters: dict[str, _TokenCounter] = {}
        # Loading is the one thing another thread might also ask for (a preset at start-up).
        self._load_lock = threading.RLock()
        self._load_times: dict[str, float] = {}  # loads not yet reported, under their own lock (never held long)
        self._load_times_lock = threading.Lock()
        loaders = {**default_component_loaders(config), **config.component_loaders}
        self._components = ComponentCache(loaders, config.component_cache, device=self._device, dtype=self._dtype)
        _silence_same_dtype_cast_warning()
        _disable_library_progress_bars()

    @property
    def device(self) -> torch.device:
        return self._device

    def take_load_times(self) -> dict[str, float]:
        """The models loaded since the last call, and the seconds each load took (a worker's heartbeat tells them)."""
        with self._load_times_lock:
            taken, self._load_times = self._load_times, {}
        return taken

    def free_memory_bytes(self) -> int | None:
        """The device's free memory as its driver tells it (a worker's heartbeat reports it); None off CUDA."""
        if self._device.type != "cuda":
            return None
        free, _total = torch.cuda.mem_get_info(self._device)
        return int(free)

    def adapters_loaded(self) -> int:
        """How many LoRA adapters the resident model holds (at most ``lora_cache``)."""
        resident = self._resident
        return len(resident.adapters.loras) if resident is not None else 0

    def resident_components(self) -> tuple[ComponentKey, ...]:
        """The components loaded beside the model (at most ``component_cache``), least recently used first."""
        return self._components.resident()

    def fast_path(self) -> FastPath | None:
        """The resident model's compiled buckets (``models.fastpath``); None when compiling is off."""
        resident = self._resident
        return resident.fast if resident is not None else None

    # -- loading -----------------------------------------------------------------

    def load(self, model: str) -> ModelPreset:
        """Load ``model`` (if it is not loaded) and return its preset; it becomes the most recently used.

        Beyond ``models_resident`` the least recently used model is freed *before* the new one loads:
        two SDXL models do not fit on most GPUs at once. References that can never load (a pickle file,
        a missing path) are rejected first, so they cost nothing.
        """
        return self._ensure_loaded(model).preset

    def count_prompt_tokens(self, model: str, prompt: str) -> int:
        """Tokens the text encoder would see, BOS/EOS included; above ``max_prompt_tokens`` is cut.

        Safe from any thread once ``model`` has been loaded; loads it otherwise.
        """
        counter = self._token_counters.get(model)
        if counter is None:
            self._ensure_loaded(model)
            counter = self._token_counters[model]
        with counter.lock:
            encoded = counter.tokenizer(prompt, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def tokenizer_files(self, model: str) -> dict[str, bytes]:
        """The tokenizer of a loaded ``model`` as files, for a process that counts tokens without the model."""
        counter = self._token_counters.get(model)
        if counter is None:
            self._ensure_loaded(model)
            counter = self._token_counters[model]
        with counter.lock:
            return tokenizer_files(counter.tokenizer)

    @property
    def _resident(self) -> _Resident | None:
        """The model used last."""
        return next(reversed(self._residents.values()), None)

    def resident_models(self) -> tuple[str, ...]:
        """The models loaded now (at most ``models_resident``), the least recently used first."""
        return tuple(self._residents)

    def _ensure_loaded(self, model: str) -> _Resident:
        with self._load_lock:
            resident = self._residents.get(model)
            if resident is not None:
                self._residents.move_to_end(model)
                return resident
            began = time.perf_counter()
            # 1. Reject what can never load before giving up a loaded model.
            resolve_model_source(model)
            # 2. Make room: the least recently used go first (two SDXL models do not fit most GPUs at once).
            while len(self._residents) >= self._models_resident:
                self._unload(next(iter(self._residents)))
            # 3. Load, choose the preset, and start compiling in the background if asked. A model that does not
            #    fit beside the others is tried once more alone.
            try:
                pipeline = self._load(model)
            except ModelUnavailable as refused:
                if not self._residents or not isinstance(refused.__cause__, torch.cuda.OutOfMemoryError):
                    raise
                log.info("%s does not fit beside %s; freeing them and trying again", model, ", ".join(self._residents))
                while self._residents:
                    self._unload(next(iter(self._residents)))
                pipeline = self._load(model)
            preset = preset_for(model, pipeline)
            self._token_counters[model] = _TokenCounter(copy.deepcopy(pipeline.tokenizer), threading.Lock())
            resident = _Resident(
                model=model,
                pipeline=pipeline,
                preset=preset,
                fast=self._start_fast_path(pipeline, preset),
                adapters=ResidentAdapters(self._config.lora_cache),
            )
            self._residents[model] = resident
            with self._load_times_lock:
                self._load_times[model] = time.perf_counter() - began
            log.info("loaded %s (%s) on %s as %s", model, preset.family, self._device, pipeline.dtype)
            return resident

    def _load(self, model: str) -> Pipeline:
        return load_pipeline(model, device=self._device, dtype=self._dtype, cache_dir=self._config.cache_dir)

    def _unload(self, model: str) -> None:
        resident = self._residents.pop(model)
        if resident.fast is not None:
            resident.fast.stop()
        del resident
        gc.collect()
        self._free_cached_memory()
        log.info("freed %s", model)

    def _start_fast_path(self, pipeline: Pipeline, preset: ModelPreset) -> FastPath | None:
        """Compile the UNet bucket by bucket in the background (``models.fastpath``); None when off."""
        if not self._compiles or not FAMILIES[ModelFamily(preset.family)].sd:
            return None  # the fast path compiles a UNet: the transformer families run eager
        if self._device.type == "cuda":
            # Both pay only compiled (0.92x eager without): channels_last convolutions, one QKV matmul.
            pipeline.unet.to(memory_format=torch.channels_last)
            pipeline.vae.to(memory_format=torch.channels_last)
            pipeline.fuse_qkv_projections()
        buckets = buckets_for(self._config.bucket_sizes(preset), self._config.max_batch_images)
        fast: FastPath | None = None

        def warm_up(bucket: Bucket) -> None:
            """The real pipeline for ``bucket``, two steps, latents out: it compiles what serving will call."""
            spec = BatchSpec(
                model=preset.model,
                operation=Operation.TXT2IMG,
                width=bucket.width,
                height=bucket.height,
                steps=2,
                guidance=preset.guidance,
                scheduler=preset.scheduler,
            )
            tasks = tuple(ImageTask("", "", seed) for seed in range(bucket.images))
            txt2img = pipeline_operation_for(Operation.TXT2IMG)
            call = pipeline_for_call(txt2img, pipeline, ModelFamily(preset.family), spec)
            assert fast is not None
            call.unet = fast.switch
            generators = [torch.Generator(device=self._device).manual_seed(task.seed) for task in tasks]
            arguments = call_arguments(
                spec, tasks, generators, lambda _pipe, _index, _t, tensors: tensors, ModelFamily(preset.family)
            )
            call(**{**arguments, "output_type": "latent"})

        fast = FastPath.start(pipeline.unet, buckets, warm_up, model=preset.model, compiler=self._config.compiler)
        return fast

    # -- generation --------------------------------------------------------------

    def run(
        self,
        batch: GenerationBatch,
        on_step: StepCallback | None = None,
        should_interrupt: Callable[[], bool] | None = None,
    ) -> BatchOutput:
        """Generate one RGB image per task, in task order (or, for a captioning operation, one text per
        task). Blocking; call from the GPU thread.

        Raises ``ModelUnavailable`` if the model cannot load, ``GenerationInterrupted``
        when ``should_interrupt`` returns true, ``GenerationOutOfMemory`` when even
        a single image does not fit, ``InvalidBatch`` for a spec it cannot run.
        """
        operation = operation_for(batch.spec.operation)
        if isinstance(operation, ComponentOperation):
            return self._run_component(operation, batch, should_interrupt)
        # 1. Check the batch, load its model; an upscale's sources enlarged by its upscaler first.
        resident = self._ensure_loaded(batch.spec.model)
        if batch.spec.upscaler is not None:
            batch = self._enlarged(batch, batch.spec.upscaler)
        check_batch(batch, resident.pipeline, ModelFamily(resident.preset.family))
        if should_interrupt is not None and should_interrupt():
            raise GenerationInterrupted("The job was cancelled before it started.")
        if batch.spec.redraw_tile:
            return self._redrawn_in_tiles(resident, batch, on_step, should_interrupt)
        # 2. Pad up to a compiled bucket (the padding's images are dropped), and generate,
        #    halving the batch whenever the GPU runs out of memory.
        started = time.perf_counter()
        tasks = batch.tasks
        if resident.fast is not None:
            tasks = padded(tasks, resident.fast.rows_for(len(tasks), batch.spec.width, batch.spec.height))

        def generate(part: Sequence[ImageTask], first_task: int) -> TaskOutputs:
            return TaskOutputs(
                images=tuple(self._generate(resident, batch.spec, part, first_task, on_step, should_interrupt))
            )

        outputs, calls = self._splitting(batch.spec, tasks, 0, generate)
        return BatchOutput(
            images=outputs.images[: len(batch.tasks)],
            seeds=tuple(task.seed for task in batch.tasks),
            pipeline_calls=calls,
            seconds=time.perf_counter() - started,
        )

    def _redrawn_in_tiles(
        self,
        resident: _Resident,
        batch: GenerationBatch,
        on_step: StepCallback | None,
        should_interrupt: Callable[[], bool] | None,
    ) -> BatchOutput:
        """``run`` for a redraw too large for one call: each image in overlapping tiles, blended back
        (``models.operations.tiled``); a tile's seed is its image's plus its place, so the result is reproducible."""
        spec = batch.spec
        started = time.perf_counter()
        images: list[Image.Image] = []
        calls = 0
        for task in batch.tasks:
            assert task.init_image is not None  # check_batch made sure
            source = task.init_image.convert("RGB")
            if source.size != (spec.width, spec.height):
                source = source.resize((spec.width, spec.height), Image.Resampling.LANCZOS)
            placed = tiled.tiles(spec.width, spec.height, spec.redraw_tile)
            parts = [
                replace(task, init_image=source.crop(tile.box), seed=(task.seed + place) % 2**32)
                for place, tile in enumerate(placed)
            ]
            tile_spec = replace(spec, width=placed[0].width, height=placed[0].height, redraw_tile=0, upscaler=None)

            def generate(part: Sequence[ImageTask], first_task: int, tile_spec: BatchSpec = tile_spec) -> TaskOutputs:
                drawn = self._generate(resident, tile_spec, part, first_task, on_step, should_interrupt)
                return TaskOutputs(images=tuple(drawn))

            drawn, made = self._splitting(tile_spec, parts, 0, generate)
            calls += made
            images.append(tiled.blend(drawn.images, placed, spec.width, spec.height))
        return BatchOutput(
            images=tuple(images),
            seeds=tuple(task.seed for task in batch.tasks),
            pipeline_calls=calls,
            seconds=time.perf_counter() - started,
        )

    def _enlarged(self, batch: GenerationBatch, upscaler: str) -> GenerationBatch:
        """``batch`` with each task's source enlarged to the spec's size by the upscaler component ``upscaler``."""
        net = self._components.get(ComponentKey(ComponentKind.UPSCALER, upscaler))
        sizes = replace(batch.spec, model=upscaler, operation=Operation.SUPER_RESOLUTION)
        check_sources(GenerationBatch(spec=sizes, tasks=batch.tasks))
        with torch.inference_mode():
            enlarged = super_resolution.run(net, sizes, batch.tasks).images
        tasks = tuple(replace(task, init_image=image) for task, image in zip(batch.tasks, enlarged, strict=True))
        return GenerationBatch(spec=batch.spec, tasks=tasks)

    def _run_component(
        self, operation: ComponentOperation, batch: GenerationBatch, should_interrupt: Callable[[], bool] | None
    ) -> BatchOutput:
        """``run`` for an operation that calls a cached component on the sources: no pipeline, no steps."""
        # 1. Check the batch, take its component from the cache (loading it there if need be); the resident
        #    model stays as it is.
        operation.check(batch)
        if should_interrupt is not None and should_interrupt():
            raise GenerationInterrupted("The job was cancelled before it started.")
        component = self._components.get(ComponentKey(operation.kind, batch.spec.model))

        # 2. Run, halving the batch whenever the GPU runs out of memory.
        started = time.perf_counter()

        def call(part: Sequence[ImageTask], _first_task: int) -> TaskOutputs:
            if should_interrupt is not None and should_interrupt():
                raise GenerationInterrupted("The job was cancelled.")
            with torch.inference_mode():
                return operation.run(component, batch.spec, part)

        outputs, calls = self._splitting(batch.spec, batch.tasks, 0, call)
        return BatchOutput(
            images=outputs.images,
            seeds=tuple(task.seed for task in batch.tasks),
            pipeline_calls=calls,
            seconds=time.perf_counter() - started,
            texts=outputs.texts,
        )

    def _splitting(
        self,
        spec: BatchSpec,
        tasks: Sequence[ImageTask],
        first_task: int,
        call: Callable[[Sequence[ImageTask], int], TaskOutputs],
    ) -> tuple[TaskOutputs, int]:
        """What ``call`` makes of ``tasks`` (rows ``first_task``… of the batch), and in how many calls."""
        try:
            return call(tasks, first_task), 1
        except torch.cuda.OutOfMemoryError as exc:
            detail = str(exc)  # a string keeps nothing of the failed call alive
        # Recover outside the except block: the exception's traceback keeps the failed
        # call's frames, and with them its GPU tensors, alive until the block ends.
        self._free_cached_memory()
        if len(tasks) == 1:
            log.warning("one %dx%d image does not fit: %s", spec.width, spec.height, detail)
            raise GenerationOutOfMemory(
                f"A {spec.width}x{spec.height} image does not fit in GPU memory even on its own: try a smaller size."
            )
        log.info("out of GPU memory with %d images; retrying in halves", len(tasks))
        half = (len(tasks) + 1) // 2
        first, first_calls = self._splitting(spec, tasks[:half], first_task, call)
        second, second_calls = self._splitting(spec, tasks[half:], first_task + half, call)
        return first + second, first_calls + second_calls

    def _generate(
        self,
        resident: _Resident,
        spec: BatchSpec,
        tasks: Sequence[ImageTask],
        first_task: int,
        on_step: StepCallback | None,
        should_interrupt: Callable[[], bool] | None,
    ) -> list[Image.Image]:
        """One pipeline call for ``tasks`` (rows ``first_task``… of the batch)."""
        # 1. A fresh scheduler and pipeline object for this call; the weights are shared.
        operation = pipeline_operation_for(spec.operation)
        resident.adapters.apply(resident.pipeline, spec)
        pipeline = pipeline_for_call(operation, resident.pipeline, ModelFamily(resident.preset.family), spec)
        if resident.fast is not None and not resident.adapters.loras:
            # Compiled where a bucket is ready, eager elsewhere. A LoRA changes the UNet's modules, which the
            # compiled graphs were traced without: once one is loaded, this model runs eager.
            pipeline.unet = resident.fast.switch

        # 2. One generator per image, so an image depends only on its own seed.
        generators = [torch.Generator(device=self._device).manual_seed(task.seed) for task in tasks]

        # 3. Progress and cancellation, once per denoising step.
        def step_end(pipe: Pipeline, index: int, _timestep: Any, tensors: dict[str, Any]) -> dict:
            if on_step is not None:
                on_step(
                    StepProgress(
                        step=index + 1,
                        total=pipe.num_timesteps,
                        latents=tensors["latents"],
                        first_task=first_task,
                    )
                )
            if should_interrupt is not None and should_interrupt():
                pipe._interrupt = True
                raise _InterruptRequested
            return tensors

        # 4. Arguments: lists, one entry per task, as the operation wants them; weighted or long prompts
        #    as embeddings per row instead of text.
        arguments = call_arguments(spec, tasks, generators, step_end, ModelFamily(resident.preset.family))
        if spec.weighted:
            prompts, negatives = arguments.pop("prompt"), arguments.pop("negative_prompt")
            family = ModelFamily(resident.preset.family)
            arguments.update(weighted_arguments(pipeline, family, prompts, negatives, embeddings=bool(spec.embeddings)))

        # 5. Run.
        try:
            images = self._call_pipeline(pipeline, arguments)
        except _InterruptRequested:
            raise GenerationInterrupted("The job was cancelled.") from None
        if getattr(pipeline, "_interrupt", False):  # set elsewhere: the loop skipped the remaining steps
            raise GenerationInterrupted("The job was cancelled.")
        return operation.finish([image.convert("RGB") for image in images], tasks)

    def _call_pipeline(self, pipeline: Pipeline, arguments: dict[str, Any]) -> list[Image.Image]:
        """The single place a pipeline runs: tests point this at a stand-in to simulate a GPU OOM."""
        return list(pipeline(**arguments).images)

    def _free_cached_memory(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- previews ----------------------------------------------------------------

    def latent_preview(self, latents: torch.Tensor, row: int, preset: ModelPreset, max_side: int = 128) -> Image.Image:
        """A cheap RGB impression of one row of in-flight latents (see ``models.preview``)."""
        return preview.latent_preview(latents, row, preset, max_side)
