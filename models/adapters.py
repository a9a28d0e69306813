"""What a resident model carries beyond its weights: LoRA adapters and textual-inversion embeddings.

One ``ResidentAdapters`` per loaded model. Embeddings are added to its tokenizer and text encoder once per
file and stay; LoRAs load as named PEFT adapters, at most ``lora_cache`` of them, least recently used out
first, and each batch makes exactly its own LoRAs active at its own weights, so jobs batch together only
when their adapter sets are equal (the ``BatchSpec`` says which). The same calls serve every family:
diffusers' LoRA mixins (Stable Diffusion's on the UNet and text encoders, ``Flux2LoraLoaderMixin`` and
``ZImageLoraLoaderMixin`` on the transformer) load, weight, switch off and delete adapters alike; only
unfusing QKV attention is Stable Diffusion's (its fast path fuses it). Adapters that come later
(IP-Adapter) belong here too, beside the pipeline rather than inside the engine's run.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from models.errors import ModelUnavailable
from models.finetunes import FineTuneKind, FineTuneUnusable, load_embedding
from models.types import BatchSpec, embedding_token

if TYPE_CHECKING:
    from models.pipeline import Pipeline


class _ListsAdapters(Protocol):
    """diffusers' ``get_list_adapters``: each LoRA-loadable component's adapters (``{"transformer": [...]}``)."""

    def get_list_adapters(self) -> dict[str, list[str]]: ...


class NoMatchingLayers(ValueError):
    """A LoRA file that loaded without error into none of the model's components.

    The flow families' loaders only warn when nothing of a file is the transformer's (diffusers'
    own layout without its ``transformer.`` prefix, say), so ``set_adapters`` would fail later on
    an adapter that does not exist; this names it as a LoRA that does not fit instead.
    """


@dataclass(slots=True)
class ResidentAdapters:
    """The adapters loaded into one model: LoRAs by file (least recently used first), embeddings by file."""

    lora_cache: int
    loras: OrderedDict[str, str] = field(default_factory=OrderedDict)  # file -> adapter name
    embeddings: set[str] = field(default_factory=set)

    def apply(self, pipeline: Pipeline, spec: BatchSpec) -> None:
        """Load the batch's embeddings and LoRAs into ``pipeline`` (once each), and make exactly its LoRAs active."""
        for file in spec.embeddings:
            if file not in self.embeddings:
                load_embedding(pipeline, _fine_tune_file(file), embedding_token(file))
                self.embeddings.add(file)
        if not spec.loras:
            if self.loras:
                pipeline.disable_lora()
            return
        for file_id, _ in spec.loras:
            if file_id in self.loras:
                self.loras.move_to_end(file_id)
                continue
            if not self.loras and _qkv_fused(pipeline):
                # Only before a model's first adapter: the check walks every module, and nothing fuses again.
                # A LoRA's q/k/v layers are skipped by fused attention (only to_out would apply): unfuse first.
                pipeline.unfuse_qkv_projections()
            wanted = {wanted_id for wanted_id, _ in spec.loras}
            while len(self.loras) >= self.lora_cache:
                evicted = next((old for old in self.loras if old not in wanted), None)
                if evicted is None:
                    break
                pipeline.delete_adapters(self.loras.pop(evicted))
            name = f"lc_{Path(file_id).stem}"
            try:
                with warnings.catch_warnings():  # PEFT warns that a model with one adapter gets another: it should
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                    pipeline.load_lora_weights(str(_fine_tune_file(file_id)), adapter_name=name)
                if not _holds(pipeline, name):
                    raise NoMatchingLayers(f"none of the layers of {file_id} is one of this model's")
            except (OSError, ValueError, KeyError, RuntimeError) as error:  # PEFT: "target modules not found";
                # torch: a layer of another width (a FLUX.2 klein 9B LoRA on 4B), which diffusers undoes whole
                raise FineTuneUnusable(FineTuneKind.LORA, Path(file_id).stem, error) from error
            self.loras[file_id] = name
        pipeline.enable_lora()
        pipeline.set_adapters(
            [self.loras[file_id] for file_id, _ in spec.loras],
            adapter_weights=[weight for _, weight in spec.loras],
        )


def _fine_tune_file(file: str) -> Path:
    path = Path(file)
    if not path.is_file():
        raise ModelUnavailable("A LoRA or embedding of this job is no longer stored where this worker looks.")
    return path


def _holds(pipeline: Pipeline, name: str) -> bool:
    """Whether an adapter called ``name`` is in any of the pipeline's components."""
    listed = cast("_ListsAdapters", pipeline).get_list_adapters()
    return any(name in adapters for adapters in listed.values())


def _qkv_fused(pipeline: Pipeline) -> bool:
    """Whether the UNet runs fused QKV attention (the fast path's set-up on CUDA); a transformer family has none."""
    unet = getattr(pipeline, "unet", None)  # a flow pipeline has no UNet, and diffusers says so by AttributeError
    processors = getattr(unet, "attn_processors", {})
    return any(type(processor).__name__.startswith("Fused") for processor in processors.values())
