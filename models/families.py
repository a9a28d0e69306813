"""The model families Latentcord runs, as data: one entry each, read by loading, presets, operations and the bot.

A family is told by the pipeline class a model's ``model_index.json`` names (a fine-tune
under any name wants its family's size and steps), and declares here what differs between
families: its diffusers pipeline class per operation, its defaults (native size, steps,
guidance, scheduler), how its prompts are read (compel's weights and long prompts,
textual-inversion embeddings and a negative prompt are Stable Diffusion's alone), the side its
sizes are a multiple of, its denoiser (a UNet, which the fast path compiles and LoRAs of
``models.architectures`` fit, or a transformer) and its latent preview. Adding a family is one
entry here plus what its operations need.

The module imports neither torch nor diffusers, so the bot process can ask it what a model's
family accepts before any worker has loaded one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from models.types import ModelFamily

DEFAULT_SCHEDULER = "EulerAncestralDiscreteScheduler"
# Draft mode (/draft): DPM++ 2M, a second-order multistep solver that gets close to Euler a's image
# in well under half its steps, and draws no noise of its own, so the seed still decides the image.
DRAFT_SCHEDULER = "DPMSolverMultistepScheduler"
#: The flow-matching families' one scheduler: Euler on the flow's sigmas, which the pipeline sets.
FLOW_SCHEDULER = "FlowMatchEulerDiscreteScheduler"

# CLIP's context length: every Stable Diffusion family reads its prompt in windows of it.
CLIP_MAX_TOKENS = 77
# What the flow-matching families' Qwen3 text encoders read of a prompt (the pipelines' own limit).
QWEN_MAX_TOKENS = 512

# Linear maps from a 4-channel latent to RGB in [-1, 1] (rows: latent channels; columns: R, G, B): the widely used
# public approximations, fitted by regressing decoded images on latents. SD2 shares SD1's VAE and so its factors.
SD1_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SDXL_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_LATENT_RGB_BIAS: tuple[float, float, float] = (0.1084, -0.0175, -0.0011)


@dataclass(frozen=True, slots=True)
class Family:
    """One family's entry; see the module docstring."""

    family: ModelFamily
    label: str  # as members read it: "SD 1.x", "FLUX.2 klein"
    #: The diffusers class that runs each pipeline operation ("txt2img", "img2img", "inpaint", and "referenced" on
    #: a family that edits by instruction and takes reference images).
    pipelines: Mapping[str, str]
    #: ``model_index.json``'s ``_class_name`` values that are this family (the first is what it loads as).
    index_classes: tuple[str, ...]
    side: int | None  # its native square side; None: read from the checkpoint (SD 2.x: 512 or 768)
    steps: int
    guidance: float
    scheduler: str
    draft_scheduler: str  # what a draft channel draws with, in fewer of the family's steps
    max_prompt_tokens: int
    size_multiple: int  # every width and height a multiple of it (the VAE's, times a transformer's patch)
    weighted_prompts: bool  # compel's (word:1.3) weights and prompts longer than one window
    embeddings: bool  # textual-inversion embeddings in the prompt
    negative_prompt: bool  # whether the model reads one at all
    denoiser: str  # "unet" or "transformer": what the fast path compiles and a LoRA's layers belong to
    #: img2img (a variation, an upscale) runs as an inpaint of the whole image, with its strength.
    img2img_as_inpaint: bool = False
    latent_rgb_factors: tuple[tuple[float, float, float], ...] | None = None
    latent_rgb_bias: tuple[float, float, float] | None = None
    #: The 16-bit type its weights must be held in on a GPU ("bfloat16" where fp16 overflows); None: the engine's.
    half_dtype: str | None = None
    #: How many images one referenced call reads at most (an edit's picture and its references); 0: it edits none.
    max_references: int = 0

    @property
    def edits(self) -> bool:
        """Whether it edits by instruction and takes reference images (a "referenced" pipeline)."""
        return self.max_references > 0 and "referenced" in self.pipelines

    @property
    def sd(self) -> bool:
        """A Stable Diffusion family: a UNet read through CLIP (LoRAs of ``models.architectures``, compel)."""
        return self.denoiser == "unet"


_SD_PIPELINES = MappingProxyType(
    {
        "txt2img": "StableDiffusionPipeline",
        "img2img": "StableDiffusionImg2ImgPipeline",
        "inpaint": "StableDiffusionInpaintPipeline",
    }
)
_SDXL_PIPELINES = MappingProxyType(
    {
        "txt2img": "StableDiffusionXLPipeline",
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
    }
)


def _stable_diffusion(
    family: ModelFamily,
    label: str,
    *,
    side: int | None,
    steps: int,
    guidance: float,
    xl: bool = False,
    claims_index: bool = True,
) -> Family:
    """A Stable Diffusion family: a UNet read through CLIP, with compel, embeddings and a negative prompt.

    SD 1.x claims ``StableDiffusionPipeline`` folders; SD 2.x and builtin:tiny are the same class, told
    apart by their UNet and their id (``models.presets``), so they claim none.
    """
    return Family(
        family,
        label,
        pipelines=_SDXL_PIPELINES if xl else _SD_PIPELINES,
        index_classes=(
            () if not claims_index else ("StableDiffusionXLPipeline",) if xl else ("StableDiffusionPipeline",)
        ),
        side=side,
        steps=steps,
        guidance=guidance,
        scheduler=DEFAULT_SCHEDULER,
        draft_scheduler=DRAFT_SCHEDULER,
        max_prompt_tokens=CLIP_MAX_TOKENS,
        size_multiple=8,
        weighted_prompts=True,
        embeddings=True,
        negative_prompt=True,
        denoiser="unet",
        latent_rgb_factors=SDXL_LATENT_RGB_FACTORS if xl else SD1_LATENT_RGB_FACTORS,
        latent_rgb_bias=SDXL_LATENT_RGB_BIAS if xl else None,
    )


def _flow(family: ModelFamily, label: str, *, side: int, pipelines: Mapping[str, str], **traits: object) -> Family:
    """A flow-matching transformer read through Qwen3: no compel, no embeddings, sides a multiple of 16."""
    return Family(
        family,
        label,
        pipelines=MappingProxyType(dict(pipelines)),
        index_classes=() if family.value.startswith("tiny") else (pipelines["txt2img"],),
        side=side,
        scheduler=FLOW_SCHEDULER,
        draft_scheduler=FLOW_SCHEDULER,
        max_prompt_tokens=QWEN_MAX_TOKENS,
        size_multiple=16,
        weighted_prompts=False,
        embeddings=False,
        denoiser="transformer",
        half_dtype="bfloat16",
        **traits,  # type: ignore[arg-type]
    )


#: Images a FLUX.2 klein call reads besides its prompt: an /edit's three and a moodboard's five, and no more
#: (each one lengthens the transformer's sequence by its own tokens, at every step).
MAX_KLEIN_REFERENCES = 8


def _klein(family: ModelFamily, label: str, *, side: int) -> Family:
    pipelines = {
        "txt2img": "Flux2KleinPipeline",
        "img2img": "Flux2KleinInpaintPipeline",
        "inpaint": "Flux2KleinInpaintPipeline",
        "referenced": "Flux2KleinPipeline",  # its image list: the picture edited first, then the references
    }
    return _flow(
        family,
        label,
        side=side,
        pipelines=pipelines,
        steps=4,
        guidance=1.0,
        negative_prompt=False,
        img2img_as_inpaint=True,
        max_references=MAX_KLEIN_REFERENCES,
    )


def _zimage(family: ModelFamily, label: str, *, side: int) -> Family:
    pipelines = {"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline", "inpaint": "ZImageInpaintPipeline"}
    return _flow(family, label, side=side, pipelines=pipelines, steps=8, guidance=0.0, negative_prompt=True)


#: Steps of the builtin tiny models: they draw noise either way, so the count only has to exercise the loop
#: while a 4-image 64 px job stays at a few CPU seconds.
TINY_DEFAULT_STEPS = 20
TINY_SIDE = 64

FAMILIES: Final[Mapping[ModelFamily, Family]] = MappingProxyType(
    {
        ModelFamily.SD1: _stable_diffusion(ModelFamily.SD1, "SD 1.x", side=512, steps=25, guidance=7.0),
        # SD2 comes as 512 px (epsilon) and 768 px (v-prediction) checkpoints; the UNet tells them apart.
        ModelFamily.SD2: _stable_diffusion(
            ModelFamily.SD2, "SD 2.x", side=None, steps=25, guidance=7.0, claims_index=False
        ),
        ModelFamily.SDXL: _stable_diffusion(ModelFamily.SDXL, "SDXL", side=1024, steps=25, guidance=6.0, xl=True),
        ModelFamily.TINY: _stable_diffusion(
            ModelFamily.TINY, "tiny (SD)", side=TINY_SIDE, steps=TINY_DEFAULT_STEPS, guidance=7.0, claims_index=False
        ),
        # FLUX.2 [klein] 4B and 9B (Black Forest Labs): a step- and guidance-distilled flow transformer read through
        # Qwen3; 4 steps, no negative prompt (its pipeline takes none), guidance ignored by the distilled models.
        # Its img2img is reference editing, so a variation is an inpaint of the whole image at the job's strength;
        # that reference editing is its "referenced" call (/edit, references, moodboards).
        ModelFamily.KLEIN: _klein(ModelFamily.KLEIN, "FLUX.2 klein", side=1024),
        # Z-Image-Turbo (Tongyi-MAI): a 6B single-stream flow transformer read through Qwen3; 8 steps, its guidance
        # is pos + g * (pos - neg), so 0 is none (where SD's 1 is), and a negative prompt counts only above 0.
        ModelFamily.ZIMAGE: _zimage(ModelFamily.ZIMAGE, "Z-Image", side=1024),
        # Their builtin tiny builds (models.tiny_flow): the same pipelines, a few dozen wide, so a LoRA made for one
        # fits only it, as builtin:tiny's own family keeps SD LoRAs apart.
        ModelFamily.TINY_KLEIN: _klein(ModelFamily.TINY_KLEIN, "tiny (FLUX.2 klein)", side=TINY_SIDE),
        ModelFamily.TINY_ZIMAGE: _zimage(ModelFamily.TINY_ZIMAGE, "tiny (Z-Image)", side=TINY_SIDE),
    }
)

#: ``model_index.json``'s pipeline class -> the family it loads as.
BY_INDEX_CLASS: Final[Mapping[str, ModelFamily]] = MappingProxyType(
    {name: entry.family for entry in FAMILIES.values() for name in entry.index_classes}
)


def family(name: str | ModelFamily) -> Family:
    """The entry of a family, by its value (``ModelPreset.family``); ``KeyError`` for one that is not known."""
    return FAMILIES[ModelFamily(name)]


def supported_families() -> str:
    """The families in words, for a sentence refusing a model of another: "SD 1.x, SD 2.x, SDXL, ... and Z-Image"."""
    labels = [entry.label for entry in FAMILIES.values() if not entry.family.value.startswith("tiny")]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def family_label(name: str | ModelFamily) -> str:
    """A family's name as members read it ("SD 1.x", "FLUX.2 klein"); the value itself for one not known here."""
    try:
        return FAMILIES[ModelFamily(name)].label
    except ValueError:
        return str(name)
