"""What a fine-tune file is, from its safetensors header: never unpickled, no weights loaded to find out.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw bytes. ``inspect_fine_tune`` has the
safetensors library read the header (which checks that every byte range is where the header
says and as long as its dtype and shape need, for every dtype the library knows), reads the
smallest tensor of each dtype to see that torch can compute with it, and tells from the tensor
names and shapes what the file is:

- a Stable Diffusion LoRA in kohya/A1111 (``lora_unet_..._attn2_to_k.lora_down.weight``),
  diffusers (``unet.<module>.to_k.lora.down.weight``) or PEFT (``..._to_k.lora_A.weight``) layout;
- a FLUX.2 klein or Z-Image LoRA in any layout the family's diffusers loader reads: diffusers'
  own (``transformer.<module>.lora_A.weight``), kohya's (``lora_unet_double_blocks_0_img_attn_qkv
  .lora_down.weight``; Z-Image ``lora_unet_layers_0_attention_to_q``), ai-toolkit's
  (``diffusion_model.`` before BFL's ``double_blocks``/``single_blocks`` names for klein, before
  the transformer's own names for Z-Image), PEFT's ``base_model.model.`` (klein);
- a textual-inversion embedding in A1111 (``emb_params``; SDXL ``clip_l`` + ``clip_g``) or
  diffusers (one tensor named by its token) layout;

and for which model family: for Stable Diffusion, the width of the text its cross-attention reads
(768 for SD 1.x, 1024 for SD 2.x, 2048 for SDXL, 32 for ``builtin:tiny``); for the flow-matching
families, the transformer whose layers the LoRA names at the widths it has them, read as that
family's pipeline would load it (``models.architectures``: FLUX.2 klein 4B, Z-Image-Turbo and the
builtin tiny builds). Pickles (``.pt``, ``.ckpt``, ``.bin``, ``.pth``) are refused by name and by
their first bytes: loading one runs code. ``check_lora_fits`` then compares a LoRA's layers with
those of its family's models, so one that fits none is refused when it is added, not at its first job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from models.architectures import (
    FLOW_ARCHITECTURES,
    FamilyLayers,
    TransformerLayers,
    family_layers,
    transformer_layers,
)
from models.errors import ModelError
from models.families import family_label, supported_families
from models.sources import PICKLE_SUFFIXES
from models.types import ModelFamily


class FineTuneError(ModelError):
    """A file that is not a fine-tune Latentcord can use; the message is one sentence for a moderator."""


class FineTuneKind(StrEnum):
    LORA = "lora"
    EMBEDDING = "embedding"


class FineTuneUnusable(ModelError):
    """A LoRA or embedding a batch names that this worker cannot apply: unreadable here, or not fitting the model.

    ``sha256`` names the file (its stem), so the bot side can say which of the guild's names it is
    (``sentence_for``); ``str(error)`` is the sentence without a name.
    """

    def __init__(self, kind: FineTuneKind, sha256: str, error: BaseException) -> None:
        self.kind, self.sha256 = kind, sha256
        self.unreadable = isinstance(error, OSError)
        self.cause = type(error).__name__
        label = "A LoRA" if kind is FineTuneKind.LORA else "An embedding"
        what = "could not be read on this worker" if self.unreadable else "does not fit this model"
        super().__init__(f"{label} of this job {what} ({self.cause}).")

    def sentence_for(self, name: str, model: str) -> str:
        """The member's sentence, naming the fine-tune as the guild knows it."""
        label = "LoRA" if self.kind is FineTuneKind.LORA else "embedding"
        if self.unreadable:
            return (
                f"The {label} {name} could not be read on the worker that ran this job ({self.cause}), "
                "so it did not run and nothing was charged."
            )
        return (
            f"The {label} {name} does not fit the model {model} ({self.cause}), so this job did not run and "
            f"nothing was charged; a moderator can remove it with /{label.lower()} remove {name}."
        )


#: The width of the text a model's cross-attention reads, by family (``ModelPreset.family``).
CONTEXT_WIDTHS: Final = {768: "sd1", 1024: "sd2", 2048: "sdxl", 32: "tiny"}
#: A text encoder's width, by family, for embeddings and text-encoder LoRAs.
TEXT_WIDTHS: Final = {768: "sd1", 1024: "sd2", 32: "tiny"}
FAMILY_NAMES: Final = {
    "sd1": "SD 1.x",
    "sd2": "SD 2.x",
    "sdxl": "SDXL",
    "tiny": "builtin:tiny",
    **{family.value: family_label(family) for family in FLOW_ARCHITECTURES},
}

_DAMAGED: Final = "That file's safetensors header is damaged."
_NOT_ITS_DATA: Final = (
    "That file's safetensors header does not match its data (a tensor's shape and type need other bytes)."
)
_IMPOSSIBLE_LENGTH: Final = "That file's safetensors header is damaged (its length is impossible)."
#: What the safetensors library's refusals mean, for a moderator: the first fragment its message holds wins.
_DAMAGE: Final = (
    ("header too small", "That file is too short to be a safetensors file."),
    ("header too large", _IMPOSSIBLE_LENGTH),
    ("invalid header length", _IMPOSSIBLE_LENGTH),
    ("unknown variant", "That file stores a tensor in a type this bot's safetensors library does not know."),
    ("invalid json", "That file's safetensors header is damaged (it is not a JSON table of tensors)."),
    ("invalid utf-8", "That file's safetensors header is damaged (it is not text)."),
    ("not fully covered", "That file is cut short, or longer than its safetensors header says."),
    ("invalid shape, data type, or offset", _NOT_ITS_DATA),
    ("overflow computing buffer size", _NOT_ITS_DATA),
    (
        "invalid offset for tensor",
        "That file's safetensors header is damaged (its tensors' bytes overlap or leave gaps).",
    ),
)
_PICKLE_STARTS: Final = (b"\x80", b"PK\x03\x04")  # a pickle protocol byte; torch.save's zip archive
_LORA_DOWN = re.compile(r"(lora_down|lora\.down|lora_A(\.default)?|down)\.weight$")


@dataclass(frozen=True, slots=True)
class FineTuneInfo:
    kind: FineTuneKind
    family: str  # a ModelPreset.family: "sd1", "sd2", "sdxl", "tiny", "flux2-klein", "z-image", "tiny-klein", ...
    tensors: int


@dataclass(frozen=True, slots=True)
class _Tensor:
    dtype: str
    shape: tuple[int, ...]


def refuse_pickle(filename: str, start: bytes) -> None:
    """Refuse a pickle by its name or its first bytes, before anything else looks at it."""
    if filename.lower().endswith(tuple(PICKLE_SUFFIXES)) or start.startswith(_PICKLE_STARTS):
        raise FineTuneError(
            "That is a pickle file, which runs code when it is loaded; give the .safetensors version of it."
        )
    if not filename.lower().endswith(".safetensors"):
        raise FineTuneError("Fine-tunes must be .safetensors files.")


def read_header(path: Path) -> dict[str, _Tensor]:
    """The tensors a safetensors file declares, read by the safetensors library itself.

    It checks what a hand-written reader would have to: that the header is a table of known dtypes,
    and that each tensor's bytes lie in order in the file and are as many as its dtype and shape
    need. Each dtype is then read once, so a file in a type torch cannot compute with is refused by
    that name rather than at its first job.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            tensors: dict[str, _Tensor] = {}
            for name in file.keys():
                view = file.get_slice(name)
                tensors[name] = _Tensor(str(view.get_dtype()), tuple(int(side) for side in view.get_shape()))
            _refuse_unusable_dtypes(file, tensors)
    except SafetensorError as error:
        raise FineTuneError(_damage_sentence(str(error))) from None
    if not tensors:
        raise FineTuneError("That file holds no tensors.")
    return tensors


def _damage_sentence(reason: str) -> str:
    lowered = reason.lower()
    return next((sentence for fragment, sentence in _DAMAGE if fragment in lowered), _DAMAGED)


def _refuse_unusable_dtypes(file: Any, tensors: dict[str, _Tensor]) -> None:
    """Reads the smallest tensor of each dtype as torch would: a float, of the shape the header says."""
    import torch
    from safetensors import SafetensorError

    smallest: dict[str, tuple[str, _Tensor]] = {}
    for name, tensor in tensors.items():
        known = smallest.get(tensor.dtype)
        if known is None or math.prod(tensor.shape) < math.prod(known[1].shape):
            smallest[tensor.dtype] = (name, tensor)
    for dtype, (name, tensor) in smallest.items():
        try:
            value = file.get_tensor(name)
            usable = value.is_floating_point() and tuple(value.shape) == tensor.shape
            if usable:
                value.to(torch.float32)
        except (SafetensorError, RuntimeError):  # a dtype torch lacks (F6_E2M3), or cannot copy (F4)
            usable = False
        if not usable:
            raise FineTuneError(
                f"That file stores its weights as {dtype}, which this bot cannot compute with; "
                "give a version saved as F16, BF16 or F32."
            )


def inspect_fine_tune(path: Path, filename: str) -> FineTuneInfo:
    """What ``path`` (uploaded as ``filename``) is and for which family; ``FineTuneError`` in one sentence."""
    with path.open("rb") as file:
        refuse_pickle(filename, file.read(8))
    tensors = read_header(path)
    names = list(tensors)
    if any(_LORA_DOWN.search(name) and "lora" in name.lower() for name in names):
        family = _sd_lora_family(tensors) or _flow_lora_family(path)
        return FineTuneInfo(FineTuneKind.LORA, family, len(tensors))
    return FineTuneInfo(FineTuneKind.EMBEDDING, _embedding_family(tensors), len(tensors))


def _sd_lora_family(tensors: dict[str, _Tensor]) -> str | None:
    """The SD family from what the LoRA's cross-attention keys read, else from its text-encoder layers."""
    for name, tensor in tensors.items():
        lowered = name.lower()
        if "attn2" in lowered and ("to_k" in lowered or "to_v" in lowered) and _LORA_DOWN.search(name):
            if len(tensor.shape) == 2 and tensor.shape[1] in CONTEXT_WIDTHS:
                return CONTEXT_WIDTHS[tensor.shape[1]]
    if any(name.startswith(("lora_te1_", "lora_te2_")) for name in tensors):
        return "sdxl"
    for name, tensor in tensors.items():
        if name.startswith(("lora_te_", "text_encoder.")) and _LORA_DOWN.search(name) and len(tensor.shape) == 2:
            if tensor.shape[1] in TEXT_WIDTHS:
                return TEXT_WIDTHS[tensor.shape[1]]
    return None


def _flow_lora_family(path: Path) -> str:
    """The flow-matching family whose transformer has the LoRA's layers at its widths, as its pipeline loads it.

    The families' loaders read different names (klein's blocks are not Z-Image's), and the builds of
    one family differ in width only (builtin:tiny-klein's 32 against FLUX.2 klein 4B's 3072), so at
    most one fits. One whose names are a family's but not its widths is for another size of that model.
    """
    state = _stand_ins(path, _flow_value)
    nearest: tuple[int, ModelFamily] | None = None
    for family in FLOW_ARCHITECTURES:
        layers = transformer_layers(family)
        try:
            fit = _flow_fit(_flow_targets(state, layers), layers)
        except _UNREADABLE:
            continue  # not in a layout this family's loader reads
        if fit.fits:
            return family.value
        if fit.named and (nearest is None or fit.named > nearest[0]):
            nearest = (fit.named, family)
    if nearest is not None:
        raise FineTuneError(_another_size(nearest[1]))
    raise FineTuneError(
        f"That file looks like a LoRA, but not one for a model of a family this bot runs ({supported_families()})."
    )


def check_lora_fits(path: Path, family: str) -> None:
    """Refuse a LoRA none of whose layers is a layer of ``family``'s models, before it is kept.

    Its names are read as the family's pipeline reads them in ``load_lora_weights``: diffusers'
    own conversions of the kohya, diffusers and PEFT layouts (and ai-toolkit's for the flow
    families), the UNet's and each text encoder's part apart, and PEFT's own matching of target
    modules against module names. The weights are stand-ins on the meta device; only kohya's
    alphas (one number each) are read, and the few values FLUX.2's kohya conversion looks at
    (``_flow_value``). A file of which some layers fit is kept: diffusers applies those and
    leaves out the rest. A flow family's transformer takes a LoRA only at its own widths: one layer
    of another width and diffusers refuses the whole file, so every layer it has must fit.
    """
    model_family = ModelFamily(family)
    if model_family in FLOW_ARCHITECTURES:
        _check_flow_lora_fits(path, model_family)
        return
    state = _stand_ins(path, lambda name: name.endswith(".alpha"))
    count = _layer_count(state)  # before the conversion, which takes kohya's names out of ``state``
    layers = family_layers(model_family)
    targets = _lora_targets(state, layers)
    if not any(_fits_one(names, layers.layers[component]) for component, names in targets.items()):
        raise FineTuneError(_fits_none(count, family))


def _layer_count(state: dict[str, Any]) -> int:
    return sum(1 for name in state if _LORA_DOWN.search(name))


def _fits_none(count: int, family: str) -> str:
    which = "its one layer is not" if count == 1 else f"none of its {count} layers is"
    return f"That LoRA does not fit {FAMILY_NAMES.get(family, family)} models: {which} one of theirs."


def _stand_ins(path: Path, read: Callable[[str], bool]) -> dict[str, Any]:
    """A LoRA file's tensors as diffusers' conversions take them: the values of those ``read`` names (as F32), and
    for the rest empty tensors of their shapes on the meta device, which cost nothing."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return {
            name: file.get_tensor(name).to(torch.float32)
            if read(name)
            else torch.empty(file.get_slice(name).get_shape(), device="meta")
            for name in file.keys()
        }


def _lora_targets(state: dict[str, Any], layers: FamilyLayers) -> dict[str, set[str]]:
    """The modules a LoRA targets, by component ("unet", "text_encoder", ...), as diffusers names them."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin
    from diffusers.utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    try:
        # 1. The layout the pipeline loads: kohya's names (and SDXL's sgm blocks) in diffusers' terms.
        if layers.xl:
            state, _ = StableDiffusionXLLoraLoaderMixin.lora_state_dict(state, unet_config=layers.unet_config)
        else:
            state, _ = StableDiffusionLoraLoaderMixin.lora_state_dict(state)
        # 2. Each component's part, in PEFT's names, as the UNet's and the text encoders' loaders convert it.
        targets: dict[str, set[str]] = {}
        for component in layers.layers:
            prefix = f"{component}."
            part = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
            if not part:
                continue
            if component == "unet":
                if "lora_A" not in next(iter(part)):
                    part = convert_unet_state_dict_to_peft(part)
            else:
                part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
                if component in layers.flattened:
                    part = {key.removeprefix("text_model."): value for key, value in part.items()}
            targets[component] = {key.split(".lora")[0] for key in part}
    except (KeyError, IndexError, ValueError) as error:
        raise FineTuneError(
            "That LoRA's layers are not in a layout diffusers can load (kohya, diffusers or PEFT): "
            f"{type(error).__name__}."
        ) from None
    return targets


def _fits_one(targets: set[str], names: frozenset[str]) -> bool:
    """Whether PEFT would find a module among ``names`` for one of ``targets``, as it does when it injects."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    config = LoraConfig(target_modules=sorted(targets))
    return any(check_target_module_exists(config, name) for name in names)


def _embedding_family(tensors: dict[str, _Tensor]) -> str:
    if {"clip_l", "clip_g"} <= set(tensors):
        return "sdxl"
    vectors = tensors.get("emb_params")
    if vectors is None and len(tensors) == 1:
        vectors = next(iter(tensors.values()))  # diffusers: one tensor, named by its token
    if vectors is not None and 1 <= len(vectors.shape) <= 2 and vectors.shape[-1] in TEXT_WIDTHS:
        return TEXT_WIDTHS[vectors.shape[-1]]
    raise FineTuneError(
        "That file is neither a LoRA nor a textual-inversion embedding (A1111 or diffusers layout) "
        "for a Stable Diffusion model."
    )


# -- the flow-matching families --------------------------------------------------------------------------

#: What a loader's conversion raises on names it cannot read (a leftover key, a block number that is not one),
#: and torch on a computation the stand-ins cannot make.
_UNREADABLE: Final = (KeyError, IndexError, ValueError, RuntimeError, NotImplementedError)
#: kohya's names for FLUX.2's fused q/k/v projections, whose up weights its conversion splits by their values.
_KOHYA_FUSED_UP = re.compile(r"^lora_unet_.*_qkv\.lora_up\.weight$")


@dataclass(frozen=True, slots=True)
class _FlowFit:
    """How a LoRA's layers meet a transformer's: how many it has by name, and how many of those at their widths."""

    named: int
    sized: int

    @property
    def fits(self) -> bool:
        return self.named > 0 and self.sized == self.named


def _flow_value(name: str) -> bool:
    """Whether the flow loaders' conversions compute with this tensor's values: an alpha, or kohya's fused q/k/v
    up weight, which FLUX.2's conversion splits by whether it is block-diagonal."""
    return name.endswith(".alpha") or bool(_KOHYA_FUSED_UP.match(name))


def _flow_targets(state: dict[str, Any], layers: TransformerLayers) -> dict[str, tuple[int | None, int | None]]:
    """The transformer modules a LoRA targets as its family's pipeline loads it, with the (in, out) widths its
    ``lora_A`` and ``lora_B`` weights give them; one of ``_UNREADABLE`` where the loader cannot read the file."""
    import diffusers.loaders
    from diffusers.utils import convert_unet_state_dict_to_peft

    # 1. The loader's own conversion (kohya's, ai-toolkit's and PEFT's names to diffusers'), as load_lora_weights
    #    makes it, and that method's own check that what comes out is a LoRA.
    loader = getattr(diffusers.loaders, layers.lora_loader)
    converted = loader.lora_state_dict(_with_kohya_alphas(state, layers))
    if not all("lora" in key or "lokr" in key for key in converted):
        raise ValueError("not a LoRA once converted")
    # 2. The transformer's part in PEFT's names, as the transformer's load_lora_adapter takes it.
    part = {
        key.removeprefix("transformer."): value for key, value in converted.items() if key.startswith("transformer.")
    }
    if part and "lora_A" not in next(iter(part)):
        part = convert_unet_state_dict_to_peft(part)
    # 3. Each module's widths: lora_A reads its input, lora_B writes its output.
    widths: dict[str, tuple[int | None, int | None]] = {}
    for key, value in part.items():
        if value.ndim != 2:  # a bias of lora_B
            continue
        module = key.split(".lora")[0]
        inner, outer = widths.get(module, (None, None))
        if "lora_A" in key:
            inner = int(value.shape[1])
        elif "lora_B" in key:
            outer = int(value.shape[0])
        widths[module] = (inner, outer)
    return widths


def _with_kohya_alphas(state: dict[str, Any], layers: TransformerLayers) -> dict[str, Any]:
    """A copy of ``state`` (the loaders convert in place), with the alpha FLUX.2's kohya conversion takes for a
    layer that has none (its rank) written out, so that no stand-in's value is asked for."""
    import torch

    state = dict(state)
    if layers.lora_loader != "Flux2LoraLoaderMixin":
        return state
    suffix = ".lora_down.weight"
    for name, value in list(state.items()):
        if name.endswith(suffix):
            state.setdefault(name.removesuffix(suffix) + ".alpha", torch.tensor(float(value.shape[0])))
    return state


def _flow_fit(widths: dict[str, tuple[int | None, int | None]], layers: TransformerLayers) -> _FlowFit:
    """Which of a LoRA's modules the transformer has, matched as PEFT matches target modules (the name, or a
    name ending in ``.<target>``), and whether each has the widths the LoRA's weights need."""
    named = sized = 0
    for module, (inner, outer) in widths.items():
        found = [shape for name, shape in layers.linears.items() if name == module or name.endswith(f".{module}")]
        if not found:
            continue
        named += 1
        sized += all(inner in (None, have_in) and outer in (None, have_out) for have_in, have_out in found)
    return _FlowFit(named, sized)


def _another_size(family: ModelFamily) -> str:
    model = transformer_layers(family).model
    return (
        f"That LoRA is for a {FAMILY_NAMES[family.value]} model of another size: its layers have the names of "
        f"{model}'s but not their widths."
    )


def _check_flow_lora_fits(path: Path, family: ModelFamily) -> None:
    state = _stand_ins(path, _flow_value)
    layers = transformer_layers(family)
    try:
        fit = _flow_fit(_flow_targets(state, layers), layers)
    except _UNREADABLE as error:  # the family's loader refuses its names: another family's layout
        raise FineTuneError(
            f"That LoRA does not fit {FAMILY_NAMES[family.value]} models: their diffusers loader cannot read its "
            f"layers ({type(error).__name__})."
        ) from None
    if fit.named == 0:
        raise FineTuneError(_fits_none(_layer_count(state), family.value))
    if not fit.fits:
        raise FineTuneError(_another_size(family))


def load_embedding(pipeline: Any, path: Path, token: str) -> None:
    """Add an embedding file to ``pipeline``'s tokenizer and text encoder as ``token`` (SDXL: both encoders)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        if {"clip_l", "clip_g"} <= set(tensors):
            pipeline.load_textual_inversion(
                tensors["clip_l"], token=token, text_encoder=pipeline.text_encoder, tokenizer=pipeline.tokenizer
            )
            pipeline.load_textual_inversion(
                tensors["clip_g"], token=token, text_encoder=pipeline.text_encoder_2, tokenizer=pipeline.tokenizer_2
            )
            return
        vectors = tensors.get("emb_params", next(iter(tensors.values())))
        pipeline.load_textual_inversion(vectors, token=token)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise FineTuneUnusable(FineTuneKind.EMBEDDING, path.stem, error) from error
