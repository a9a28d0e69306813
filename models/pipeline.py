"""The part of a diffusers pipeline Latentcord uses, as a Protocol the type checker can follow.

diffusers builds its classes lazily (the type checker sees placeholder objects), so the
attributes the engine relies on are named here once; everything in ``models/`` is typed
against this, and the one place a pipeline is created says that it is one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class Pipeline(Protocol):
    """A Stable Diffusion (1.x, 2.x, XL) text-to-image pipeline, or one made from it with ``from_pipe``."""

    unet: Any
    vae: Any
    tokenizer: Any
    scheduler: Any
    vae_scale_factor: int
    num_timesteps: int
    _interrupt: bool  # diffusers' own flag: set it from the step callback to stop after this step

    @property
    def dtype(self) -> torch.dtype: ...

    def to(self, device: torch.device | str) -> Any: ...

    def set_progress_bar_config(self, **options: Any) -> None: ...

    def save_pretrained(self, folder: Any, **options: Any) -> None: ...

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None: ...

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None: ...

    # LoRA adapters, through diffusers' PEFT integration.
    def load_lora_weights(self, path: str, *, adapter_name: str) -> None: ...

    def set_adapters(self, names: list[str], adapter_weights: list[float]) -> None: ...

    def delete_adapters(self, name: str) -> None: ...

    def enable_lora(self) -> None: ...

    def disable_lora(self) -> None: ...

    def __call__(self, **arguments: Any) -> Any: ...
