"""Weighted and long prompts: each row's conditioning computed with compel (MIT) instead of the pipeline.

The worker hands prompts already in compel's syntax (``bot.jobs.prompts``). compel splits a
prompt longer than the text encoder's 77 tokens into chunks and concatenates their embeddings,
so nothing is cut; the rows of a batch (prompts and negatives) are padded to one length. For
SDXL both text encoders are used, the penultimate hidden states as diffusers does, with the
second encoder's pooled output. A prompt without weights encodes exactly as the pipeline's own
path would, so the same seed still makes the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from models.types import ModelFamily


def weighted_arguments(
    pipeline: Any, family: ModelFamily, prompts: Sequence[str], negatives: Sequence[str], *, embeddings: bool = False
) -> dict[str, torch.Tensor]:
    """``prompt_embeds`` (and the rest a pipeline call takes in their place) for these rows.

    With ``embeddings`` (the batch uses textual-inversion embeddings), a multi-vector embedding's token
    is expanded to all its vectors, as the pipeline's own path does; otherwise only its first would count.
    """
    from compel import Compel, DiffusersTextualInversionManager, ReturnedEmbeddingsType  # type: ignore[import-untyped]  # compel ships no types

    manager = DiffusersTextualInversionManager(pipeline) if embeddings else None
    with torch.no_grad():
        # Row by row, padded here: compel's own padding fails for SDXL's pair of encoders.
        if family == ModelFamily.SDXL:
            compel = Compel(
                tokenizer=[pipeline.tokenizer, pipeline.tokenizer_2],
                text_encoder=[pipeline.text_encoder, pipeline.text_encoder_2],
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                requires_pooled=[False, True],
                truncate_long_prompts=False,
                textual_inversion_manager=manager,
            )
            rows = [compel(text) for text in [*prompts, *negatives]]
            empty, _ = compel("")
            padded = _same_length([row for row, _ in rows], empty)
            pooled = [row_pooled for _, row_pooled in rows]
            split = len(prompts)
            return {
                "prompt_embeds": torch.cat(padded[:split]),
                "pooled_prompt_embeds": torch.cat(pooled[:split]),
                "negative_prompt_embeds": torch.cat(padded[split:]),
                "negative_pooled_prompt_embeds": torch.cat(pooled[split:]),
            }
        compel = Compel(
            tokenizer=pipeline.tokenizer,
            text_encoder=pipeline.text_encoder,
            truncate_long_prompts=False,
            textual_inversion_manager=manager,
        )
        padded = _same_length([compel(text) for text in [*prompts, *negatives]], compel(""))
        split = len(prompts)
        return {"prompt_embeds": torch.cat(padded[:split]), "negative_prompt_embeds": torch.cat(padded[split:])}


def _same_length(rows: list[torch.Tensor], empty: torch.Tensor) -> list[torch.Tensor]:
    """Each row (1 x tokens x width) padded with windows of the empty prompt's embedding to the longest."""
    length = max(row.shape[1] for row in rows)
    padded = []
    for row in rows:
        while row.shape[1] < length:
            row = torch.cat([row, empty[:, : length - row.shape[1]].to(row.dtype)], dim=1)
        padded.append(row)
    return padded
