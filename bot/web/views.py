"""What a gallery page shows of each result: the values its template reads, made from the store's ``ShownResult``.

Kept apart from the routes so that the wording (who made it, the LoRAs, the time) is one place, and so
that a page is data a test can read without HTML.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from db.gallery import GalleryMember, GalleryPage, ShownResult

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe


@dataclass(frozen=True, slots=True)
class Thumb:
    n: int  # the image's number in its job, from 1 (U1-U4 name them so)
    seed: int
    thumb_url: str
    image_url: str
    label: str  # alt text


@dataclass(frozen=True, slots=True)
class Card:
    job_id: int
    kind: str
    thumbs: tuple[Thumb, ...]
    upscales: tuple[Thumb, ...]
    prompt: str
    negative_prompt: str
    model: str
    seeds: str
    steps: int
    guidance: str
    size: str
    loras: str
    style: str | None
    made_by: str
    made_at: str
    stars: int
    discord_url: str | None


@dataclass(frozen=True, slots=True)
class Filters:
    """A gallery page's search and filters, as its query string has them (already checked)."""

    search: str = ""
    member_id: int | None = None
    model: str | None = None
    page: int = 1

    def query(self, **changes: object) -> str:
        """The query string of this page with ``changes`` (``page=2``), leaving out what is unset."""
        values = {"q": self.search, "member": self.member_id, "model": self.model, "page": self.page, **changes}
        return urlencode(
            {name: value for name, value in values.items() if value not in (None, "") and (name, value) != ("page", 1)}
        )


def cards(guild_id: int, page: GalleryPage[Recipe]) -> list[Card]:
    return [_card(guild_id, card, page.upscales.get(card.job.id, ())) for card in page.cards]


def member_label(member: GalleryMember) -> str:
    return member.name or f"member {member.user_id}"


def _card(guild_id: int, result: ShownResult[Recipe], upscales: tuple[ShownResult[Recipe], ...]) -> Card:
    job, recipe = result.job, result.job.recipe
    return Card(
        job_id=job.id,
        kind=str(recipe.kind),
        thumbs=_thumbs(guild_id, result),
        upscales=tuple(thumb for upscale in upscales for thumb in _thumbs(guild_id, upscale, parent=job.id)),
        prompt=recipe.prompt,
        negative_prompt=recipe.negative_prompt,
        model=recipe.model,
        seeds=", ".join(str(recipe.seeds[index]) for index in result.shown),
        steps=recipe.steps,
        guidance=f"{recipe.guidance:g}",
        size=f"{recipe.width} × {recipe.height}",
        loras=", ".join(_lora_label(lora) for lora in recipe.loras),
        style=recipe.style,
        made_by=job.member_name or f"member {job.user_id}",
        made_at=_when(job.finished_at),
        stars=result.stars,
        discord_url=(
            f"https://discord.com/channels/{guild_id}/{job.channel_id}/{job.result_message_id}"
            if job.channel_id and job.result_message_id
            else None
        ),
    )


def _thumbs(guild_id: int, result: ShownResult[Recipe], *, parent: int | None = None) -> tuple[Thumb, ...]:
    job, recipe = result.job, result.job.recipe
    base = f"/g/{guild_id}"
    return tuple(
        Thumb(
            n=index + 1,
            seed=recipe.seeds[index],
            thumb_url=f"{base}/thumbs/{job.id}/{index + 1}.webp",
            image_url=f"{base}/images/{job.id}/{index + 1}.png",
            label=(
                f"Image {index + 1} of job {job.id}"
                if parent is None
                else f"Upscale U{(recipe.parent_image or 0) + 1} of job {parent}"
            ),
        )
        for index in result.shown
    )


def _lora_label(lora: str) -> str:
    """'name:weight:sha256' as 'name (weight)'."""
    name, _, rest = lora.partition(":")
    weight = rest.partition(":")[0]
    return f"{name} ({weight})" if weight else name


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
