"""The cheap latent preview: what an image in flight roughly looks like, without the VAE."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.types import ModelPreset


def latent_preview(latents: torch.Tensor, row: int, preset: ModelPreset, max_side: int = 128) -> Image.Image:
    """A cheap RGB impression of one row of in-flight latents, longest side ``max_side``.

    A linear map from latent channels to RGB runs on the device; only the
    small uint8 result crosses to the CPU. No VAE, so it costs microseconds.
    """
    with torch.no_grad():
        latent = latents[row].float()  # (C, h, w); a transformer's packed latents are (tokens, C)
        if latent.ndim == 2:
            latent = _unpacked(latent)
        factors = preset.latent_rgb_factors
        if factors is not None and len(factors) == latent.shape[0]:
            weight = torch.tensor(factors, device=latent.device, dtype=torch.float32)
            rgb = torch.einsum("chw,cr->hwr", latent, weight)
            if preset.latent_rgb_bias is not None:
                rgb = rgb + torch.tensor(preset.latent_rgb_bias, device=latent.device)
            rgb = (rgb + 1.0) / 2.0
        else:
            # No known map: stretch the first three channels to 0..1 each.
            rgb = latent[:3].permute(1, 2, 0)
            low = rgb.amin(dim=(0, 1), keepdim=True)
            high = rgb.amax(dim=(0, 1), keepdim=True)
            rgb = (rgb - low) / (high - low).clamp_min(1e-6)
            if rgb.shape[-1] < 3:
                rgb = rgb[..., :1].expand(-1, -1, 3)
        pixels = (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _unpacked(tokens: torch.Tensor) -> torch.Tensor:
    """Packed latents (tokens x channels, row by row) as channels x h x w, h the largest divisor of the token
    count up to its square root: the image's own shape for a square one, a fair impression of any other."""
    count = tokens.shape[0]
    height = max(divisor for divisor in range(1, int(count**0.5) + 1) if count % divisor == 0)
    return tokens.T.reshape(tokens.shape[1], height, count // height)
