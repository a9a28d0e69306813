"""A member's own data: all of it exported (``/privacy export``), or deleted (``/privacy delete``).

Deleting keeps the jobs' rows, anonymised, because the ledger (every member's usage is a sum over it)
and the moderators' audit log name them: the prompts and whatever else the member wrote are cleared,
the rows are marked (``deleted_by_member_at``) so no gallery shows them, their files go from disk, their
kept pictures are let go of, and their preferences and stars are deleted. Each server they had jobs in
gets an audit entry that a deletion happened, never what was deleted. Their jobs still waiting or
running are cancelled first (and refunded, as any cancelled job is).

Exporting builds, off the event loop, zips of the member's images (``images/<job>/<n>.png``, never a
withheld one) with a ``jobs.json`` of their jobs in the first, each zip under Discord's upload limit.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bot.images.archive import job_folder
from bot.images.encoding import DISCORD_UPLOAD_LIMIT
from db.records import MemberDataDeleted

if TYPE_CHECKING:
    from bot.jobs.lifecycle import JobLifecycle
    from bot.jobs.outcomes import Job
    from bot.jobs.recipe import Recipe
    from bot.workers.protocol import WorkerClient
    from db.store import Store

__all__ = ["ExportPart", "MemberData", "MemberDataDeleted", "MemberExport"]

#: How long a deletion waits for the member's cancelled jobs to leave the queue (a running batch stops at its
#: next step), so that none writes its files after they were deleted.
CANCEL_WAIT_S: Final = 30.0
CANCEL_POLL_S: Final = 0.1
#: Room kept in each zip for its directory and headers.
ZIP_OVERHEAD: Final = 64 * 1024
#: Each file's own header and directory entry, at most (names are short).
ZIP_ENTRY_OVERHEAD: Final = 256


@dataclass(frozen=True, slots=True)
class ExportPart:
    """One zip of an export: its name and bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MemberExport:
    """A member's export: its zips (the first holds ``jobs.json``), and what is in them."""

    parts: tuple[ExportPart, ...]
    jobs: int
    images: int
    left_out: int  # images too large for any zip under the limit


class MemberData:
    def __init__(
        self,
        *,
        store: Store[Recipe],
        jobs: JobLifecycle,
        worker: WorkerClient,
        images_dir: Path,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._worker = worker
        self._images_dir = images_dir

    async def delete(self, user_id: int) -> MemberDataDeleted:
        """Delete what ``user_id`` made and wrote, keeping their jobs' rows anonymised (see the module)."""
        # 1. Their jobs still to finish, cancelled (refunded by the lifecycle, as every cancel is).
        for order in self._worker.pending_jobs(user_id):
            self._worker.cancel(order.job_id)
        for _ in range(round(CANCEL_WAIT_S / CANCEL_POLL_S)):
            if not self._worker.pending_jobs(user_id):
                break
            await asyncio.sleep(CANCEL_POLL_S)
        # 2. The rows anonymised, preferences and stars deleted, the servers' audit logs told: one transaction.
        jobs = await self._store.jobs_of_member(user_id)
        deleted = await self._store.forget_member(user_id)
        # 3. Their files, off the event loop; then the pictures they gave, once nothing else names them.
        await asyncio.to_thread(_delete_folders, self._images_dir, [job.id for job in jobs])
        for job in jobs:
            await self._jobs.let_go_of_pictures(job.recipe)
        return deleted

    async def export(self, user_id: int, *, part_limit: int = DISCORD_UPLOAD_LIMIT) -> MemberExport:
        """Zips of ``user_id``'s images and a ``jobs.json`` of their jobs, each at most ``part_limit`` bytes."""
        jobs = [job for job in await self._store.jobs_of_member(user_id) if job.deleted_by_member_at is None]
        files: list[tuple[str, Path]] = []
        entries = []
        for job in jobs:
            names = []
            if job.status == "done":
                for index, path in enumerate(await self._jobs.image_files(job)):
                    if index not in job.withheld:
                        names.append(f"images/{job.id}/{index + 1}{path.suffix}")
                        files.append((names[-1], path))
            entries.append(_job_entry(job, names))
        document = json.dumps({"user_id": str(user_id), "jobs": entries}, indent=2, ensure_ascii=False)
        return await asyncio.to_thread(_zips, user_id, document.encode(), files, part_limit, len(jobs))


def _job_entry(job: Job, images: Sequence[str]) -> dict[str, Any]:
    recipe = job.recipe
    return {
        "id": job.id,
        "kind": str(recipe.kind),
        "prompt": recipe.prompt,
        "negative_prompt": recipe.negative_prompt,
        "model": recipe.model,
        "width": recipe.width,
        "height": recipe.height,
        "steps": recipe.steps,
        "guidance": recipe.guidance,
        "seeds": list(recipe.seeds),
        "scheduler": recipe.scheduler,
        "style": recipe.style,
        "loras": list(recipe.loras),
        "status": job.status,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "guild_id": None if job.guild_id is None else str(job.guild_id),
        "channel_id": None if job.channel_id is None else str(job.channel_id),
        "cost": job.cost,
        "images": list(images),
    }


def _zips(
    user_id: int, document: bytes, files: Sequence[tuple[str, Path]], part_limit: int, job_count: int
) -> MemberExport:
    """Pack ``jobs.json`` and the images (stored: PNGs do not shrink) into as few zips under the limit as fit."""
    groups: list[list[tuple[str, bytes]]] = [[("jobs.json", document)]]
    sizes = [len(document) + ZIP_ENTRY_OVERHEAD]
    room = part_limit - ZIP_OVERHEAD
    images = left_out = 0
    for name, path in files:
        try:
            data = path.read_bytes()
        except OSError:  # gone since the job finished
            continue
        size = len(data) + ZIP_ENTRY_OVERHEAD
        if size > room:
            left_out += 1
            continue
        if sizes[-1] + size > room:
            groups.append([])
            sizes.append(0)
        groups[-1].append((name, data))
        sizes[-1] += size
        images += 1
    parts = []
    for number, group in enumerate(groups, 1):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in group:
                archive.writestr(name, data)
        suffix = "" if len(groups) == 1 else f"-part{number}"
        parts.append(ExportPart(f"latentcord-{user_id}{suffix}.zip", buffer.getvalue()))
    return MemberExport(tuple(parts), job_count, images, left_out)


def _delete_folders(images_dir: Path, job_ids: Sequence[int]) -> None:
    for job_id in job_ids:
        shutil.rmtree(job_folder(images_dir, job_id), ignore_errors=True)
