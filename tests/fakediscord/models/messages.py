"""Messages and their attachments as the fake stores them, and the uploads they are made from."""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakediscord.models.clock import iso
from tests.fakediscord.models.codes import MessageFlag, MessageType
from tests.fakediscord.models.guilds import FakeUser

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One ``files[n]`` part of a multipart request, exactly as the client sent it."""

    field_name: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)

    @property
    def index(self) -> int | None:
        match = re.fullmatch(r"files\[(\d+)\]", self.field_name)
        return int(match.group(1)) if match else None


_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}


def guess_content_type(filename: str) -> str:
    """Discord sniffs the type; the extension is close enough for the files a bot sends."""
    lower = filename.lower()
    for suffix, content_type in _CONTENT_TYPES.items():
        if lower.endswith(suffix):
            return content_type
    return "application/octet-stream"


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, which Discord reports for image attachments."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


@dataclass(slots=True, eq=False)
class StoredAttachment:
    """An uploaded file as Discord would store it; ``data`` holds the exact bytes received."""

    id: int
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def dimensions(self) -> tuple[int, int] | None:
        return png_size(self.data)

    def open_image(self) -> Image.Image:
        """Decode with Pillow, so a test can assert on the picture the bot actually posted."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "flags": 0,
        }
        if self.description is not None:
            payload["description"] = self.description
        dims = self.dimensions
        if dims is not None:
            payload["width"], payload["height"] = dims
        return payload


@dataclass(frozen=True, slots=True)
class MessageRevision:
    """A message's state just before one edit, so tests can see what a progress message went through."""

    content: str
    embeds: tuple[Mapping[str, Any], ...]
    components: tuple[Mapping[str, Any], ...]
    attachment_ids: tuple[int, ...]
    flags: int
    replaced_at: dt.datetime
    via: str


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component, depth first, through action rows, sections, containers and labels."""
    for component in components:
        yield component
        children = list(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                children.append(component[key])
        yield from walk_components(children)


@dataclass(slots=True, eq=False)
class StoredMessage:
    """A message as the fake holds it: what was sent, what it became, and whether it still exists.

    ``embeds`` and ``components`` are kept exactly as the bot sent them. ``revisions`` lists the
    states it had before each edit, oldest first.
    """

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    type: MessageType = MessageType.DEFAULT
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    edited_at: dt.datetime | None = None
    tts: bool = False
    mentions: list[FakeUser] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    deleted: bool = False
    revisions: list[MessageRevision] = field(default_factory=list, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred "Bot is thinking..." placeholder."""
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def jump_url(self) -> str:
        return f"https://discord.com/channels/{self.guild_id or '@me'}/{self.channel_id}/{self.id}"

    def all_components(self) -> list[dict[str, Any]]:
        return list(walk_components(self.components))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Every button on the message, in display order."""
        return [c for c in walk_components(self.components) if c.get("type") == 2]

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in walk_components(self.components) if c.get("custom_id") == custom_id), None)

    def button(self, *, label: str | None = None, custom_id: str | None = None) -> dict[str, Any]:
        """The one button with this label or custom id; raises so a test failure says which exist."""
        for button in self.buttons:
            shown = {button.get("label"), (button.get("emoji") or {}).get("name")}
            if (label is None or label in shown) and (custom_id is None or button.get("custom_id") == custom_id):
                return button
        shown = [(b.get("label"), b.get("custom_id")) for b in self.buttons]
        raise LookupError(f"no button label={label!r} custom_id={custom_id!r} on message {self.id}; has {shown}")

    def snapshot(self, via: str, at: dt.datetime) -> MessageRevision:
        return MessageRevision(
            content=self.content,
            embeds=tuple(self.embeds),
            components=tuple(self.components),
            attachment_ids=tuple(a.id for a in self.attachments),
            flags=self.flags,
            replaced_at=at,
            via=via,
        )

    def to_payload(self, *, referenced: StoredMessage | None = None) -> dict[str, Any]:
        by_name = {a.filename: a.url for a in self.attachments}
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.to_payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": iso(self.edited_at) if self.edited_at else None,
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [u.to_payload() for u in self.mentions],
            "mention_roles": [],
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": [_resolve_attachment_urls(e, by_name) for e in self.embeds],
            "pinned": False,
            "type": int(self.type),
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            payload["message_reference"] = self.message_reference
            if referenced is not None:
                payload["referenced_message"] = None if referenced.deleted else referenced.to_payload()
        return payload


def _resolve_attachment_urls(embed: dict[str, Any], by_name: Mapping[str, str]) -> dict[str, Any]:
    """Discord rewrites ``attachment://name`` in embed images to the uploaded file's URL."""
    resolved = dict(embed)
    for key in ("image", "thumbnail"):
        media = resolved.get(key)
        if isinstance(media, dict) and str(media.get("url", "")).startswith("attachment://"):
            name = media["url"].removeprefix("attachment://")
            if name in by_name:
                resolved[key] = {**media, "url": by_name[name], "proxy_url": by_name[name]}
    return resolved
