"""What passed between the bot and the fake: registered commands, callbacks, token use, REST calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakediscord.models.codes import CallbackType, MessageFlag
from tests.fakediscord.models.messages import UploadedFile


@dataclass(slots=True, eq=False)
class RegisteredCommand:
    """An application command as the bot registered it, plus the fields Discord adds."""

    id: int
    application_id: int
    guild_id: int | None
    definition: dict[str, Any]
    version: int

    @property
    def name(self) -> str:
        return str(self.definition["name"])

    @property
    def type(self) -> int:
        return int(self.definition.get("type", 1))

    @property
    def options(self) -> list[dict[str, Any]]:
        return list(self.definition.get("options") or [])

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **self.definition,
            "id": str(self.id),
            "application_id": str(self.application_id),
            "version": str(self.version),
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        return payload


@dataclass(frozen=True, slots=True)
class InteractionCallback:
    """One POST to ``/interactions/{id}/{token}/callback``, in the order the bot sent them.

    ``elapsed`` is real seconds from the fake sending INTERACTION_CREATE to this request arriving,
    which is what Discord's 3-second acknowledgement window measures.
    """

    type: CallbackType
    data: Mapping[str, Any]
    files: tuple[UploadedFile, ...]
    elapsed: float
    message_id: int | None

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def content(self) -> str | None:
        return self.data.get("content")

    @property
    def choices(self) -> list[dict[str, Any]]:
        """The autocomplete choices, for a type-8 callback."""
        return list(self.data.get("choices") or [])


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """Anything the bot did with one interaction's token, in order, with its timing and outcome."""

    kind: str
    """``callback``, ``followup``, ``get_message``, ``edit_message`` or ``delete_message``."""
    elapsed: float
    status: int
    message_id: int | None


@dataclass(frozen=True, slots=True)
class RestCall:
    """One HTTP request the client made, whether or not the fake knew the route."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    files: tuple[str, ...]
    status: int
    route: str | None
    """The matched route template (``/channels/{channel_id}/messages``), or None for an unknown route."""
    at: float


@dataclass(frozen=True, slots=True)
class FakeUpload:
    """A file a user attaches to an ATTACHMENT command option."""

    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = None
