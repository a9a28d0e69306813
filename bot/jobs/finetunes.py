"""Guild-approved fine-tunes: moderators add LoRAs and embeddings like emoji; members use them by name.

Adding a file checks everything before anything is kept: the name (2-32 letters, digits,
``-`` or ``_``, not a word of the built-in NSFW list, free in the guild), the weight (-2..2),
the size (``LORA_MAX_MB``), then the bytes: a pickle is refused by its name and first bytes,
and only the safetensors header is read (``models.finetunes``) to learn what the file is and
for which model family, which must be one of the guild's enabled models; a LoRA must also name
at least one layer that the family's models have (``models.architectures``). A file is kept once,
as ``FINETUNES_DIR/<sha256>.safetensors``, shared by every guild that adds the same bytes,
and deleted when no guild names it any more.

A job names its fine-tunes in its recipe (``Recipe.loras``: "name:weight:sha256",
``Recipe.embeddings``: "name:sha256"), so a re-roll after the moderators renamed or removed
one still knows what it used. ``resolve`` turns a prompt's ``<lora:name:0.8>`` tags, the
``lora`` option and the embedding names written in the prompts into those entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bot.errors import InvalidRequest
from bot.jobs.recipe import LoraUse, embedding_uses, lora_uses
from bot.policy.content_filter import check_prompt
from db.errors import StoreInputError
from db.records import AuditEntry, FineTune
from models.finetunes import (
    FAMILY_NAMES,
    FineTuneError,
    FineTuneInfo,
    FineTuneKind,
    check_lora_fits,
    inspect_fine_tune,
    refuse_pickle,
)

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from bot.settings import Settings
    from db.store import Store

NAME = re.compile(r"[A-Za-z0-9_-]{2,32}")
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0
#: ``<lora:name>`` or ``<lora:name:0.8>``, anywhere in a prompt.
LORA_TAG: Final = re.compile(r"<lora:([^:>\s]+)(?::([^>\s]*))?>", re.IGNORECASE)


def check_weight(weight: float) -> float:
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise InvalidRequest(f"A LoRA's weight must be between -2 and 2, not {weight:g}.")
    return weight


@dataclass(frozen=True, slots=True)
class Resolved:
    """A prompt with its LoRA tags taken out, and the fine-tunes it uses."""

    prompt: str
    loras: tuple[LoraUse, ...]
    embeddings: tuple[FineTune, ...]


class FineTuneLibrary:
    """The guilds' approved fine-tunes: adding, removing and listing them, and reading them out of prompts."""

    def __init__(self, settings: Settings, store: Store[Recipe]) -> None:
        self._settings = settings
        self._store = store

    # -- moderators --------------------------------------------------------------------

    async def add(
        self,
        guild_id: int,
        kind: FineTuneKind,
        name: str,
        *,
        filename: str,
        size: int,
        read: Callable[[], Awaitable[bytes]],
        families: Sequence[str],
        actor_id: int,
        weight: float = 1.0,
        nsfw: bool = False,
    ) -> tuple[FineTune, AuditEntry]:
        """Check and keep an uploaded file under ``name``; ``families``: those of the guild's enabled models."""
        # 1. What can be checked before the file is downloaded.
        check_name(name)
        check_weight(weight)
        try:
            refuse_pickle(filename, b"")
        except FineTuneError as error:
            raise InvalidRequest(str(error)) from None
        limit = self._settings.lora_max_mb
        if size > limit * 1024 * 1024:
            raise InvalidRequest(f"That file is {size / 1024 / 1024:.0f} MB; fine-tunes may be at most {limit} MB.")
        try:  # one namespace with the guild's styles and moodboards too: refused before the download
            await self._store.ensure_name_free(guild_id, name)
        except StoreInputError as taken:
            raise InvalidRequest(str(taken)) from None
        # 2. The bytes: written aside, hashed, and only the header read, off the event loop.
        data = await read()
        folder = self._settings.finetunes_dir
        try:
            sha256, info, scratch = await asyncio.to_thread(_write_and_inspect, folder, data, filename)
        except FineTuneError as error:
            raise InvalidRequest(str(error)) from None
        try:
            if info.kind != kind:
                raise InvalidRequest(f"That file is a {info.kind}, not a {kind}: add it with /{info.kind} add.")
            if info.family not in families:
                have = ", ".join(sorted({FAMILY_NAMES.get(family, family) for family in families})) or "none"
                raise InvalidRequest(
                    f"That {kind} is for {FAMILY_NAMES.get(info.family, info.family)} models; "
                    f"this server's models are {have}."
                )
            if kind is FineTuneKind.LORA:
                # 3. Its layers against the family's, from the family's architecture: no model is loaded here.
                try:
                    await asyncio.to_thread(check_lora_fits, scratch, info.family)
                except FineTuneError as error:
                    raise InvalidRequest(str(error)) from None
            target = folder / f"{sha256}.safetensors"
            await asyncio.to_thread(_keep, scratch, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()
        fine_tune = FineTune(guild_id, name, str(kind), sha256, info.family, weight, nsfw)
        try:
            entry = await self._store.add_fine_tune(fine_tune, size_bytes=len(data), actor_id=actor_id)
        except StoreInputError as refused:
            if not await self._store.fine_tune_file_known(sha256):
                await asyncio.to_thread(_delete, target)
            raise InvalidRequest(str(refused)) from None
        return fine_tune, entry

    async def remove(self, guild_id: int, kind: FineTuneKind, name: str, *, actor_id: int) -> AuditEntry:
        try:
            entry, orphan = await self._store.remove_fine_tune(guild_id, name, str(kind), actor_id=actor_id)
        except StoreInputError as refused:
            raise InvalidRequest(str(refused)) from None
        if orphan is not None:
            await asyncio.to_thread(_delete, self._settings.finetunes_dir / f"{orphan}.safetensors")
        return entry

    async def listed(self, guild_id: int, kind: FineTuneKind | None = None) -> list[FineTune]:
        return await self._store.fine_tunes(guild_id, None if kind is None else str(kind))

    # -- members ---------------------------------------------------------------------------

    async def resolve(self, guild_id: int | None, prompt: str, negative: str, option: str | None) -> Resolved:
        """The prompt without its ``<lora:...>`` tags, and the guild's LoRAs and embeddings it uses.

        Names are the guild's own: another guild's names mean nothing here.
        """
        tags = LORA_TAG.findall(prompt)
        if guild_id is None:
            if tags or option:
                raise InvalidRequest("LoRAs belong to a server; use them there.")
            return Resolved(prompt, (), ())
        approved = {item.name.casefold(): item for item in await self._store.fine_tunes(guild_id)}
        wanted: list[tuple[str, str | None]] = [(name, weight or None) for name, weight in tags]
        if option:
            wanted.insert(0, (option, None))
        loras: dict[str, LoraUse] = {}
        for name, raw_weight in wanted:
            item = approved.get(name.casefold())
            if item is None or item.kind != FineTuneKind.LORA:
                raise InvalidRequest(f"This server has no LoRA named `{name[:40]}`; /lora list shows them.")
            weight = item.weight if raw_weight is None else _number(raw_weight)
            loras[item.name] = LoraUse(item.name, check_weight(weight), item.sha256)
        if len(loras) > self._settings.lora_max_per_job:
            raise InvalidRequest(f"A job may use at most {self._settings.lora_max_per_job} LoRAs, not {len(loras)}.")
        clean = " ".join(LORA_TAG.sub(" ", prompt).split())
        words = {word.casefold() for word in re.findall(r"[A-Za-z0-9_-]+", f"{clean} {negative}")}
        embeddings = tuple(
            item for key, item in approved.items() if item.kind == FineTuneKind.EMBEDDING and key in words
        )
        # A weight of 0 is the image without the LoRA: leave it out, so the job batches with plain ones.
        used = tuple(use for use in loras.values() if use.weight != 0)
        return Resolved(clean, used, embeddings)

    async def nsfw_names(self, guild_id: int | None, recipe: Recipe) -> list[str]:
        """The fine-tunes ``recipe`` uses that this guild marked NSFW."""
        if guild_id is None or not (recipe.loras or recipe.embeddings):
            return []
        flagged = {item.sha256 for item in await self._store.fine_tunes(guild_id) if item.nsfw}
        uses = [(use.name, use.sha256) for use in lora_uses(recipe)] + embedding_uses(recipe)
        return [name for name, sha256 in uses if sha256 in flagged]


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidRequest("A name must be 2-32 letters, digits, - or _.")
    verdict = check_prompt(name.replace("-", " ").replace("_", " "), (), nsfw_allowed=False)
    if verdict.blocked and verdict.source in ("builtin", "always"):
        raise InvalidRequest(f"`{name}` reads as a word of the built-in NSFW list; choose another name.")
    return name


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"A LoRA's weight is a number between -2 and 2, not {raw[:20]!r}.") from None


def _write_and_inspect(folder: Path, data: bytes, filename: str) -> tuple[str, FineTuneInfo, Path]:
    refuse_pickle(filename, data[:8])
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".safetensors")
    scratch = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        info = inspect_fine_tune(scratch, filename)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest(), info, scratch


def _keep(scratch: Path, target: Path) -> None:
    if not target.exists():
        scratch.chmod(0o644)  # mkstemp's 0600 would keep workers running as another user out of a shared folder
        os.replace(scratch, target)


def _delete(path: Path) -> None:
    path.unlink(missing_ok=True)
