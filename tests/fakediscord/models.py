"""The fake's world: users, guilds, channels, messages and interactions, as plain records.

Everything the fake server knows lives in these dataclasses so that a test can inspect it directly
(``message.attachments[0].data``, ``ix.callbacks[0].elapsed``) instead of re-parsing HTTP traffic.
Each record renders itself into the JSON shape Discord's API uses (``to_payload``); those shapes
follow what discord.py 2.7 reads (``discord/types/*.py`` and the ``_from_data``/``__init__`` of
the model classes), including keys it indexes without ``.get`` and would crash on if missing.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import re
import struct
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
"""Discord's upload limit for an unboosted guild (``attachment_size_limit`` in interactions)."""


class MessageFlag(enum.IntFlag):
    """Message flags the fake understands (Discord's ``MessageFlags``)."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


class InteractionType(enum.IntEnum):
    """What the user did (Discord's ``InteractionType``)."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    APPLICATION_COMMAND_AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(enum.IntEnum):
    """How the bot answered an interaction (Discord's ``InteractionCallbackType``)."""

    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9
    PREMIUM_REQUIRED = 10
    LAUNCH_ACTIVITY = 12


class ChannelType(enum.IntEnum):
    """The channel kinds the fake can build (Discord's ``ChannelType``)."""

    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4


class OptionType(enum.IntEnum):
    """Application command option types (Discord's ``ApplicationCommandOptionType``)."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class MessageType(enum.IntEnum):
    """The message types the fake produces."""

    DEFAULT = 0
    REPLY = 19
    CHAT_INPUT_COMMAND = 20


class Permission(enum.IntFlag):
    """The permission bits the fake itself reasons about; any other bit passes through unchanged."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    MANAGE_GUILD = 1 << 5
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38


ALL_PERMISSIONS = (1 << 53) - 1
"""Every permission bit Discord currently defines fits below bit 53; owners and admins get them all."""

DEFAULT_EVERYONE_PERMISSIONS = int(
    Permission.CREATE_INSTANT_INVITE
    | Permission.ADD_REACTIONS
    | Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.CONNECT
    | Permission.SPEAK
    | Permission.CHANGE_NICKNAME
    | Permission.USE_APPLICATION_COMMANDS
    | Permission.CREATE_PUBLIC_THREADS
    | Permission.SEND_MESSAGES_IN_THREADS
)
"""Close to what a freshly created Discord server grants ``@everyone``."""

DEFAULT_BOT_PERMISSIONS = int(
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ADD_REACTIONS
    | Permission.USE_APPLICATION_COMMANDS
)
"""What an invite link for an image bot typically asks for; given to the bot's managed role."""


def iso(moment: dt.datetime) -> str:
    """Discord's timestamp format (ISO 8601 with offset), which ``discord.utils.parse_time`` reads."""
    return moment.isoformat()


class FakeClock:
    """Wall and monotonic time with an adjustable offset, so tests can jump past Discord's deadlines.

    Discord enforces two clocks on interactions: the 3-second acknowledgement window and the
    15-minute token lifetime. Advancing this clock makes the fake behave as if that much time had
    passed (tokens expire, new snowflakes and timestamps move forward) without sleeping.
    """

    def __init__(self) -> None:
        self.offset: float = 0.0

    def advance(self, seconds: float) -> None:
        """Jump forward; never backwards, because snowflakes must stay increasing."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self.offset += seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.offset, tz=dt.UTC)


class SnowflakeFactory:
    """Real-looking, strictly increasing snowflakes whose embedded time follows the fake clock.

    discord.py derives behaviour from a snowflake's timestamp (``created_at``, the sub-10-seconds
    delete bucket), so ids are built from the time rather than counted from 1.
    """

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        ms = int(self._clock.now().timestamp() * 1000)
        candidate = ((ms - DISCORD_EPOCH_MS) << 22) | (1 << 17)
        self._last = max(candidate, self._last + 1)
        return self._last


@dataclass(slots=True, eq=False)
class FakeUser:
    """A Discord user (a person or the bot itself)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }


@dataclass(slots=True, eq=False)
class FakeRole:
    """A guild role; ``permissions`` is the raw bit field (``discord.Permissions(...).value``)."""

    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    managed: bool = False

    @property
    def is_everyone(self) -> bool:
        return self.id == self.guild_id

    @property
    def mention(self) -> str:
        return "@everyone" if self.is_everyone else f"<@&{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.managed:
            payload["tags"] = {"bot_id": None}
        return payload


@dataclass(frozen=True, slots=True)
class PermissionOverwrite:
    """A channel permission overwrite for a role (``kind=0``) or a member (``kind=1``)."""

    target_id: int
    kind: int
    allow: int = 0
    deny: int = 0

    def to_payload(self) -> dict[str, Any]:
        return {"id": str(self.target_id), "type": self.kind, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(slots=True, eq=False)
class FakeChannel:
    """A guild channel or a DM channel. ``nsfw`` is Discord's age-restricted flag."""

    id: int
    name: str
    type: ChannelType = ChannelType.GUILD_TEXT
    guild_id: int | None = None
    nsfw: bool = False
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    overwrites: list[PermissionOverwrite] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)
    deleted: bool = False
    last_message_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def is_dm(self) -> bool:
        return self.type is ChannelType.DM

    def to_payload(self) -> dict[str, Any]:
        last = str(self.last_message_id) if self.last_message_id else None
        if self.is_dm:
            return {
                "id": str(self.id),
                "type": int(self.type),
                "recipients": [user.to_payload() for user in self.recipients],
                "last_message_id": last,
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": int(self.type),
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.to_payload() for o in self.overwrites],
            "nsfw": self.nsfw,
            "topic": self.topic,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "last_message_id": last,
            "rate_limit_per_user": 0,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }


@dataclass(slots=True, eq=False)
class FakeMember:
    """A user's membership in one guild; ``roles`` holds role ids (``@everyone`` is implicit)."""

    user: FakeUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = field(default_factory=lambda: dt.datetime(2024, 1, 1, tzinfo=dt.UTC))

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    def to_payload(self, *, include_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if include_user:
            payload["user"] = self.user.to_payload()
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload


@dataclass(slots=True, eq=False)
class FakeGuild:
    """A guild with its roles, channels and members, keyed by id."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict, repr=False)
    channels: dict[int, FakeChannel] = field(default_factory=dict, repr=False)
    members: dict[int, FakeMember] = field(default_factory=dict, repr=False)
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT
    preferred_locale: str = "en-US"
    premium_tier: int = 0

    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]

    def member(self, user: FakeUser | FakeMember | int) -> FakeMember | None:
        """The membership of ``user`` here, or None when they are not in this guild."""
        user_id = user if isinstance(user, int) else user.id
        return self.members.get(user_id)

    def base_permissions(self, member: FakeMember) -> int:
        """Guild-level permissions: @everyone, OR'd roles, owner and Administrator get everything."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role_id in member.roles:
            role = self.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & Permission.ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def channel_permissions(self, member: FakeMember, channel: FakeChannel) -> int:
        """Discord's documented overwrite algorithm: @everyone, then roles, then the member."""
        perms = self.base_permissions(member)
        if perms == ALL_PERMISSIONS:
            return perms
        by_target = {(o.kind, o.target_id): o for o in channel.overwrites}
        everyone = by_target.get((0, self.id))
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.roles:
            overwrite = by_target.get((0, role_id))
            if overwrite is not None:
                allow |= overwrite.allow
                deny |= overwrite.deny
        perms = (perms & ~deny) | allow
        own = by_target.get((1, member.id))
        if own is not None:
            perms = (perms & ~own.deny) | own.allow
        return perms

    def to_payload(self, *, bot_user_id: int, include_all_members: bool) -> dict[str, Any]:
        """The GUILD_CREATE body. Without the members intent Discord sends only the bot's member."""
        members = [m.to_payload() for m in self.members.values() if include_all_members or m.id == bot_user_id]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": self.preferred_locale,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "features": [],
            "roles": [r.to_payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [c.to_payload() for c in self.channels.values() if not c.deleted],
            "threads": [],
            "members": members,
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": iso(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }


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
