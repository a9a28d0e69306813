"""A model's tokenizer as files, so a process without the model can count a prompt's tokens.

A worker sends its models' tokenizer files once (in its first ``Ready``); the bot builds the
same CLIP tokenizer from them and counts prompts at admission without loading any weights.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any


def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files ``save_pretrained`` writes for ``tokenizer``, by name."""
    with tempfile.TemporaryDirectory(prefix="latentcord-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        return {path.name: path.read_bytes() for path in Path(folder).iterdir() if path.is_file()}


class TokenCounter:
    """Counts a prompt's tokens as the text encoder sees them (BOS and EOS included)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory(prefix="latentcord-tokenizer-") as folder:
            for name, data in files.items():
                (Path(folder) / Path(name).name).write_bytes(data)
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._lock = threading.Lock()  # tokenizers are not safe to share between threads

    def count(self, prompt: str) -> int:
        with self._lock:
            encoded = self._tokenizer(prompt, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])
