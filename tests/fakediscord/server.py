"""``FakeDiscord``: a Discord-compatible server on 127.0.0.1 for end-to-end tests of a discord.py bot.

The real discord.py client connects to it (after ``Route.BASE`` and ``DEFAULT_GATEWAY`` are
pointed here, see :mod:`tests.fakediscord.fixtures`), registers its commands, and answers the
interactions a test sends with :meth:`FakeDiscord.run_slash`, :meth:`FakeDiscord.press_button`
and friends. Everything the bot does is recorded in typed records a test can assert on.

The fake plays both sides a real deployment has: Discord's servers (REST and gateway) and the
users' Discord clients (which build interactions from the registered command definitions and
refuse what the UI would not allow).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from aiohttp import web

from tests.fakediscord.changes import ChangeFeed
from tests.fakediscord.gateway import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    Gateway,
    GatewaySession,
)
from tests.fakediscord.interactions import (
    InteractionRecord,
    OptionContext,
    build_command_data,
    interaction_channel_payload,
    modal_submit_components,
)
from tests.fakediscord.models import (
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    CallbackType,
    ChannelType,
    FakeChannel,
    FakeClock,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUpload,
    FakeUser,
    InteractionType,
    MessageFlag,
    MessageType,
    Permission,
    PermissionOverwrite,
    RegisteredCommand,
    RestCall,
    SnowflakeFactory,
    StoredAttachment,
    StoredMessage,
    UploadedFile,
    guess_content_type,
)
from tests.fakediscord.rest import Fault, RestApi, message_type_for
from tests.fakediscord.validation import DiscordAPIError, invalid_form, validate_message

_MENTION = re.compile(r"<@!?(\d+)>")
_CREATE_FLAGS = MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS | MessageFlag.IS_COMPONENTS_V2
_EDIT_FLAGS = MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2
_DM_PERMISSIONS = int(
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ADD_REACTIONS
    | Permission.USE_EXTERNAL_EMOJIS
)


@dataclass(frozen=True, slots=True)
class GuildSetup:
    """The guild most tests need, from :meth:`FakeDiscord.add_standard_guild`."""

    guild: FakeGuild
    text_channel: FakeChannel
    """``#general``: an ordinary channel (not age-restricted)."""
    nsfw_channel: FakeChannel
    """``#after-dark``: an age-restricted channel (``nsfw: true``)."""
    log_channel: FakeChannel
    """``#mod-log``: somewhere to point a moderation log."""
    moderator_role: FakeRole
    """``Moderators``: grants Manage Server."""
    owner: FakeMember
    """The guild owner (all permissions implicitly), who also holds the moderator role."""
    moderator: FakeMember
    """Not the owner: has Manage Server only through ``moderator_role``."""
    member: FakeMember
    """A regular member with @everyone's permissions."""
    bot_member: FakeMember


class FakeDiscord:
    """The fake Discord: an aiohttp app with the gateway at ``/`` and the REST API at ``/api/v10``.

    Use as ``async with FakeDiscord() as fake:`` or call :meth:`start`/:meth:`stop`. All waiting
    methods take a timeout and raise ``TimeoutError`` naming what never happened.
    """

    def __init__(
        self,
        *,
        bot_token: str | None = None,
        bot_name: str = "Latentcord",
        heartbeat_interval_ms: int = 41_250,
        ack_deadline: float | None = 3.0,
        token_lifetime: float = 15 * 60.0,
        application_flags: int = 0,
    ) -> None:
        """
        ``bot_token``: the only token accepted (401 / close 4004 otherwise); None accepts any
        non-empty token. ``ack_deadline``: seconds within which the first callback must arrive,
        as Discord enforces (None disables it). ``token_lifetime``: how long follow-ups and edits
        through an interaction token work, measured on :attr:`clock`.
        """
        self.bot_token = bot_token
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.application_flags = application_flags
        self.clock = FakeClock()
        self.ids = SnowflakeFactory(self.clock)
        self.feed = ChangeFeed()

        self.bot_user = FakeUser(id=self.ids.next(), username=bot_name, bot=True)
        self.application_id = self.bot_user.id
        self.application_owner = FakeUser(id=self.ids.next(), username="app-owner")
        self.users: dict[int, FakeUser] = {u.id: u for u in (self.bot_user, self.application_owner)}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.commands: dict[int, RegisteredCommand] = {}
        self.command_overwrites = 0
        """How many bulk overwrites (``tree.sync()``) the bot has done."""
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.calls: list[RestCall] = []

        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self.rest = RestApi(self)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """Close gateway connections (1001, as during a Discord restart) and the HTTP server."""
        await self.gateway.close_all(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be set to (also the resume URL)."""
        return f"ws://127.0.0.1:{self._port}/"

    def loop_time(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def accepts_token(self, token: str) -> bool:
        if self.bot_token is None:
            return bool(token)
        return secrets.compare_digest(token, self.bot_token)

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        """The CDN: ``Attachment.read()`` downloads from the URL the fake put in the payload."""
        attachment = self.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            return web.Response(status=404)
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})

    # -- building the world ----------------------------------------------------------------------

    def add_user(self, username: str, *, global_name: str | None = None, bot: bool = False) -> FakeUser:
        user = FakeUser(id=self.ids.next(), username=username, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Test Server",
        *,
        owner: FakeUser | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
    ) -> FakeGuild:
        """A guild with @everyone, the bot's managed role, the bot and the owner as members."""
        owner = owner or self.add_user(f"{name.lower().replace(' ', '-')}-owner")
        guild = FakeGuild(id=self.ids.next(), name=name, owner_id=owner.id, attachment_size_limit=attachment_size_limit)
        guild.roles[guild.id] = FakeRole(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=everyone_permissions
        )
        bot_role = FakeRole(
            id=self.ids.next(), guild_id=guild.id, name=self.bot_user.username, permissions=bot_permissions,
            position=1, managed=True,
        )  # fmt: skip
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = FakeMember(user=self.bot_user, guild_id=guild.id, roles=[bot_role.id])
        guild.members[owner.id] = FakeMember(user=owner, guild_id=guild.id)
        self.guilds[guild.id] = guild
        for session in self.gateway.sessions.values():
            if session.ready:
                include = session.wants(INTENT_GUILD_MEMBERS)
                session.dispatch(
                    "GUILD_CREATE", guild.to_payload(bot_user_id=self.bot_user.id, include_all_members=include)
                )
        self.feed.notify()
        return guild

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int = 0, position: int | None = None) -> FakeRole:
        role = FakeRole(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=position if position is not None else len(guild.roles),
        )
        guild.roles[role.id] = role
        self.gateway.broadcast("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.to_payload()})
        return role

    def update_role(self, role: FakeRole, *, permissions: int) -> None:
        role.permissions = permissions
        self.gateway.broadcast("GUILD_ROLE_UPDATE", {"guild_id": str(role.guild_id), "role": role.to_payload()})

    def add_text_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        nsfw: bool = False,
        topic: str | None = None,
        overwrites: Iterable[PermissionOverwrite] = (),
    ) -> FakeChannel:
        """A text channel; ``nsfw=True`` makes it age-restricted."""
        channel = FakeChannel(
            id=self.ids.next(),
            name=name,
            type=ChannelType.GUILD_TEXT,
            guild_id=guild.id,
            nsfw=nsfw,
            position=len(guild.channels),
            topic=topic,
            overwrites=list(overwrites),
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.gateway.broadcast("CHANNEL_CREATE", channel.to_payload())
        return channel

    def update_channel(
        self,
        channel: FakeChannel,
        *,
        nsfw: bool | None = None,
        name: str | None = None,
        overwrites: Iterable[PermissionOverwrite] | None = None,
    ) -> None:
        """Change a channel as a server admin would; the bot sees CHANNEL_UPDATE."""
        if nsfw is not None:
            channel.nsfw = nsfw
        if name is not None:
            channel.name = name
        if overwrites is not None:
            channel.overwrites = list(overwrites)
        self.gateway.broadcast("CHANNEL_UPDATE", channel.to_payload())

    def delete_channel(self, channel: FakeChannel) -> None:
        """Delete a channel; later requests to it get 404 Unknown Channel."""
        channel.deleted = True
        if channel.guild_id is not None:
            self.guilds[channel.guild_id].channels.pop(channel.id, None)
        self.gateway.broadcast("CHANNEL_DELETE", channel.to_payload())

    def add_member(
        self, guild: FakeGuild, user: FakeUser | str, *, roles: Iterable[FakeRole] = (), nick: str | None = None
    ) -> FakeMember:
        """Add a user (or a new user with this name) to ``guild``."""
        if isinstance(user, str):
            user = self.add_user(user)
        member = FakeMember(user=user, guild_id=guild.id, roles=[r.id for r in roles], nick=nick)
        guild.members[user.id] = member
        self.gateway.broadcast(
            "GUILD_MEMBER_ADD", {**member.to_payload(), "guild_id": str(guild.id)}, intent=INTENT_GUILD_MEMBERS
        )
        return member

    def set_member_roles(self, member: FakeMember, roles: Iterable[FakeRole]) -> None:
        member.roles = [r.id for r in roles]
        self.gateway.broadcast(
            "GUILD_MEMBER_UPDATE",
            {**member.to_payload(), "guild_id": str(member.guild_id)},
            intent=INTENT_GUILD_MEMBERS,
        )

    def dm_channel(self, user: FakeUser | FakeMember) -> FakeChannel:
        """The DM channel between ``user`` and the bot (created on first use)."""
        user = user.user if isinstance(user, FakeMember) else user
        for channel in self.channels.values():
            if channel.is_dm and channel.recipients and channel.recipients[0].id == user.id:
                return channel
        channel = FakeChannel(id=self.ids.next(), name="", type=ChannelType.DM, recipients=[user])
        self.channels[channel.id] = channel
        return channel

    def add_standard_guild(self, name: str = "Latentcord Test Server") -> GuildSetup:
        """A guild with a normal and an age-restricted channel, a mod log, a moderator role and people."""
        owner_user = self.add_user("owner", global_name="Server Owner")
        guild = self.add_guild(name, owner=owner_user)
        moderators = self.add_role(guild, "Moderators", permissions=int(Permission.MANAGE_GUILD), position=2)
        guild.members[owner_user.id].roles.append(moderators.id)
        return GuildSetup(
            guild=guild,
            text_channel=self.add_text_channel(guild, "general"),
            nsfw_channel=self.add_text_channel(guild, "after-dark", nsfw=True),
            log_channel=self.add_text_channel(guild, "mod-log"),
            moderator_role=moderators,
            owner=guild.members[owner_user.id],
            moderator=self.add_member(guild, "moderator", roles=[moderators]),
            member=self.add_member(guild, "member"),
            bot_member=guild.members[self.bot_user.id],
        )

    # -- permissions and limits --------------------------------------------------------------------

    def bot_permissions_in(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return _DM_PERMISSIONS
        guild = self.guilds[channel.guild_id]
        return guild.channel_permissions(guild.members[self.bot_user.id], channel)

    def attachment_limit_for(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DEFAULT_ATTACHMENT_SIZE_LIMIT
        return self.guilds[channel.guild_id].attachment_size_limit

    # -- messages (used by the REST handlers and by tests) ---------------------------------------

    def _new_attachment(
        self, channel_id: int, upload: UploadedFile, filename: str, description: str | None
    ) -> StoredAttachment:
        attachment_id = self.ids.next()
        attachment = StoredAttachment(
            id=attachment_id,
            filename=filename,
            content_type=guess_content_type(filename),
            data=upload.data,
            url=f"{self.url}/attachments/{channel_id}/{attachment_id}/{quote(filename)}",
            description=description,
        )
        self.attachments[attachment.id] = attachment
        return attachment

    def _build_attachments(
        self,
        channel_id: int,
        body: Mapping[str, Any],
        files: Sequence[UploadedFile],
        existing: Sequence[StoredAttachment],
        size_limit: int,
    ) -> list[StoredAttachment]:
        """Resolve ``attachments`` entries: existing ids are kept, small ids point at ``files[n]``."""
        for upload in files:
            if len(upload.data) > size_limit:
                raise DiscordAPIError(413, 40005, "Request entity too large")
        by_index = {f.index: f for f in files if f.index is not None}
        if body.get("attachments") is None:
            return [*existing, *(self._new_attachment(channel_id, f, f.filename, None) for f in files)]
        kept = {a.id: a for a in existing}
        result: list[StoredAttachment] = []
        used: set[int] = set()
        for i, entry in enumerate(body["attachments"]):
            raw_id = int(entry.get("id"))
            if raw_id in kept:
                result.append(kept[raw_id])
                continue
            upload = by_index.get(raw_id)
            if upload is None:
                raise invalid_form(f"attachments.{i}.id", f"No file was uploaded as files[{raw_id}].")
            used.add(raw_id)
            filename = entry.get("filename") or upload.filename
            result.append(self._new_attachment(channel_id, upload, filename, entry.get("description")))
        result.extend(
            self._new_attachment(channel_id, f, f.filename, None) for i, f in by_index.items() if i not in used
        )
        return result

    def _mentions(self, content: str) -> list[FakeUser]:
        found = {int(m) for m in _MENTION.findall(content)}
        return [self.users[i] for i in found if i in self.users]

    def create_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: Mapping[str, Any],
        files: Sequence[UploadedFile] = (),
        *,
        size_limit: int,
        interaction: InteractionRecord | None = None,
        allow_ephemeral: bool = False,
        allow_empty: bool = False,
        followup: bool = False,
    ) -> StoredMessage:
        """Validate and store a new message, then announce it on the gateway like Discord does."""
        content = body.get("content")
        content = "" if content is None else str(content)
        embeds = list(body.get("embeds") or [])
        components = list(body.get("components") or [])
        mask = _CREATE_FLAGS | (MessageFlag.EPHEMERAL | MessageFlag.LOADING if allow_ephemeral else 0)
        flags = int(body.get("flags") or 0) & int(mask)
        message_id = self.ids.next()
        attachments = self._build_attachments(channel.id, body, files, (), size_limit)
        validate_message(
            content=content,
            embeds=embeds,
            components=components,
            attachment_count=len(attachments),
            flags=flags,
            has_poll="poll" in body,
            has_stickers=bool(body.get("sticker_ids")),
            allow_empty=allow_empty,
        )
        reference = body.get("message_reference")
        kind = message_type_for(interaction, followup=followup)
        if reference:
            referenced = self.messages.get(int(reference.get("message_id") or 0))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise invalid_form("message_reference", "Unknown message")
            reference = {
                "type": 0,
                "message_id": str(reference.get("message_id")),
                "channel_id": str(channel.id),
                **({"guild_id": str(channel.guild_id)} if channel.guild_id else {}),
            }
            kind = MessageType.REPLY
        message = StoredMessage(
            id=message_id,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            flags=flags,
            type=kind,
            created_at=self.clock.now(),
            tts=bool(body.get("tts")),
            mentions=self._mentions(content),
            allowed_mentions=body.get("allowed_mentions"),
            message_reference=reference or None,
        )
        if interaction is not None:
            message.webhook_id = interaction.application_id
            message.application_id = interaction.application_id
            message.interaction_id = interaction.id
            message.interaction_metadata = self._interaction_metadata(interaction, followup=followup)
        self.messages[message.id] = message
        if not message.ephemeral:
            channel.last_message_id = message.id
            self._announce("MESSAGE_CREATE", channel, self._gateway_message(message))
        self.feed.notify()
        return message

    def edit_message(
        self,
        message: StoredMessage,
        body: Mapping[str, Any],
        files: Sequence[UploadedFile] = (),
        *,
        via: str,
        size_limit: int,
    ) -> None:
        """Apply a PATCH (or an UPDATE_MESSAGE callback), keeping the previous state as a revision."""
        content = message.content
        if "content" in body:
            content = "" if body["content"] is None else str(body["content"])
        embeds = list(body.get("embeds") or []) if "embeds" in body else message.embeds
        components = list(body.get("components") or []) if "components" in body else message.components
        attachments = message.attachments
        if "attachments" in body or files:
            attachments = self._build_attachments(message.channel_id, body, files, message.attachments, size_limit)
        flags = int(message.flags) & ~int(MessageFlag.LOADING)
        if body.get("flags") is not None:
            flags = (flags & ~int(_EDIT_FLAGS)) | (int(body["flags"]) & int(_EDIT_FLAGS))
        validate_message(
            content=content, embeds=embeds, components=components, attachment_count=len(attachments), flags=flags
        )
        now = self.clock.now()
        message.revisions.append(message.snapshot(via, now))
        if not message.loading:
            message.edited_at = now
        message.content = content
        message.embeds = embeds
        message.components = components
        message.attachments = attachments
        message.flags = flags
        message.mentions = self._mentions(content)
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if not message.ephemeral:
            self._announce("MESSAGE_UPDATE", self.channels[message.channel_id], self._gateway_message(message))
        self.feed.notify()

    def delete_message(self, message: StoredMessage) -> None:
        message.deleted = True
        if not message.ephemeral:
            payload: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id:
                payload["guild_id"] = str(message.guild_id)
            self._announce("MESSAGE_DELETE", self.channels[message.channel_id], payload)
        self.feed.notify()

    def message_payload(self, message: StoredMessage) -> dict[str, Any]:
        referenced = None
        if message.message_reference:
            referenced = self.messages.get(int(message.message_reference["message_id"]))
        return message.to_payload(referenced=referenced)

    def _gateway_message(self, message: StoredMessage) -> dict[str, Any]:
        payload = self.message_payload(message)
        guild = self.guilds.get(message.guild_id or 0)
        member = guild.member(message.author) if guild else None
        if member is not None:
            payload["member"] = member.to_payload(include_user=False)
        return payload

    def _announce(self, event: str, channel: FakeChannel, payload: dict[str, Any]) -> None:
        intent = INTENT_DIRECT_MESSAGES if channel.is_dm else INTENT_GUILD_MESSAGES
        self.gateway.broadcast(event, payload, intent=intent)

    def _interaction_metadata(self, ix: InteractionRecord, *, followup: bool) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "id": str(ix.id),
            "type": int(ix.type),
            "user": ix.user.to_payload(),
            "authorizing_integration_owners": ix.payload["authorizing_integration_owners"],
        }
        if ix.type is InteractionType.APPLICATION_COMMAND:
            metadata["name"] = ix.payload["data"]["name"]
            metadata["command_type"] = 1
        if ix.source_message_id is not None:
            metadata["interacted_message_id"] = str(ix.source_message_id)
        if followup and ix.original_message_id is not None:
            metadata["original_response_message_id"] = str(ix.original_message_id)
        return metadata

    def post_user_message(self, channel: FakeChannel, user: FakeUser | FakeMember, content: str) -> StoredMessage:
        """A person typing in a channel (MESSAGE_CREATE reaches the bot if it has the intent)."""
        author = user.user if isinstance(user, FakeMember) else user
        return self.create_message(channel, author, {"content": content}, size_limit=DEFAULT_ATTACHMENT_SIZE_LIMIT)

    # -- queries ---------------------------------------------------------------------------------

    def channel_messages(
        self, channel: FakeChannel, *, include_ephemeral: bool = True, include_deleted: bool = False
    ) -> list[StoredMessage]:
        """Messages in ``channel``, oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel.id
            and (include_ephemeral or not m.ephemeral)
            and (include_deleted or not m.deleted)
        ]

    async def wait_for_message(
        self,
        channel: FakeChannel,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        timeout: float = 5.0,
        after: StoredMessage | int | None = None,
        include_ephemeral: bool = True,
    ) -> StoredMessage:
        """The oldest message in ``channel`` (newer than ``after``) satisfying ``predicate``.

        Messages are re-checked after every change, so a predicate on an edited state (say, "has
        an attachment") matches once the bot's edit lands.
        """
        after_id = after.id if isinstance(after, StoredMessage) else (after or 0)

        def check() -> StoredMessage | None:
            for message in self.channel_messages(channel, include_ephemeral=include_ephemeral):
                if message.id > after_id and (predicate is None or predicate(message)):
                    return message
            return None

        return await self.feed.wait_until(check, timeout=timeout, what=f"a message in #{channel.name or channel.id}")

    async def wait_until(
        self,
        check: Callable[[], Any],
        *,
        timeout: float = 5.0,
        what: str = "a condition",
    ) -> Any:
        """Wait until ``check()`` returns something other than None or False.

        Re-checked on every change of the fake and every 20 ms, so ``check`` may also look at the
        client's state (``lambda: bot.get_channel(channel.id)``).
        """
        return await self.feed.wait_until(lambda: check() or None, timeout=timeout, what=what, poll=0.02)

    def find_command(self, name: str, guild: FakeGuild | None = None) -> RegisteredCommand | None:
        """The chat-input command a user in ``guild`` would get: the guild's own, else the global one."""
        scopes = [guild.id, None] if guild is not None else [None]
        for scope in scopes:
            for command in self.commands.values():
                if command.guild_id == scope and command.name == name and command.type == 1:
                    return command
        return None

    def registered_commands(self, guild: FakeGuild | None = None) -> list[RegisteredCommand]:
        """Commands registered globally (``guild=None``) or for one guild."""
        scope = guild.id if guild is not None else None
        return [c for c in self.commands.values() if c.guild_id == scope]

    def calls_to(self, method: str, route: str) -> list[RestCall]:
        """Recorded calls that matched a route template, e.g. ``("PUT", "/applications/{application_id}/commands")``."""
        return [c for c in self.calls if c.method == method and c.route == route]

    @property
    def unknown_calls(self) -> list[RestCall]:
        """Requests to routes the fake does not implement (answered 404/405)."""
        return [c for c in self.calls if c.route is None]

    # -- failures --------------------------------------------------------------------------------

    def inject_fault(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int = 500,
        code: int = 0,
        message: str = "Internal Server Error",
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer the next ``times`` requests whose path matches the regex ``path`` with an error.

        E.g. ``inject_fault(r"^/channels/\\d+/messages$", method="POST", status=403, code=50013,
        message="Missing Permissions")``. Note discord.py retries 500/502/504 itself, with sleeps.
        """
        fault = Fault(
            method=method,
            path=re.compile(path),
            status=status,
            body={"message": message, "code": code},
            headers=dict(headers or {}),
            remaining=times,
        )
        self.rest.faults.append(fault)
        return fault

    def rate_limit(self, path: str, *, method: str | None = None, retry_after: float = 0.1, times: int = 1) -> Fault:
        """Answer with 429 the way Discord does (``Via`` header and ``retry_after``), so discord.py retries."""
        fault = self.inject_fault(
            path,
            method=method,
            status=429,
            times=times,
            headers={"Via": "1.1 google", "Retry-After": str(retry_after), "X-RateLimit-Scope": "user"},
        )
        fault.body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False, "code": 0}
        return fault

    # -- gateway ---------------------------------------------------------------------------------

    async def wait_for_gateway(self, timeout: float = 10.0) -> GatewaySession:
        """The connected, READY bot session (waits for one, e.g. while a restarted bot connects)."""
        return await self.feed.wait_until(self.gateway.active, timeout=timeout, what="a READY gateway session")

    def expire_interaction(self, interaction: InteractionRecord) -> None:
        """Age one interaction past its 15-minute token (and 3-second window) without moving the clock."""
        interaction.issued_at -= self.token_lifetime + 1

    def force_reconnect(self) -> None:
        """Send op 7 RECONNECT, as Discord does before moving a session; discord.py resumes."""
        self.gateway.send_reconnect()

    # -- interactions ----------------------------------------------------------------------------

    def _member_in(self, guild: FakeGuild, user: FakeUser | FakeMember) -> FakeMember:
        member = guild.member(user)
        if member is None:
            raise ValueError(f"{user!r} is not a member of {guild.name!r}; use add_member first")
        return member

    def _store_upload(self, upload: FakeUpload, channel: FakeChannel) -> StoredAttachment:
        """A file a user attached to a command option, stored so its URL can be downloaded."""
        raw = UploadedFile("files[0]", upload.filename, upload.content_type or "", upload.data)
        attachment = self._new_attachment(channel.id, raw, upload.filename, None)
        if upload.content_type:
            attachment.content_type = upload.content_type
        return attachment

    async def _dispatch_interaction(
        self,
        kind: InteractionType,
        data: dict[str, Any],
        *,
        user: FakeUser | FakeMember,
        channel: FakeChannel,
        message: StoredMessage | None = None,
        locale: str = "en-US",
        connect_timeout: float = 10.0,
    ) -> InteractionRecord:
        """Build the INTERACTION_CREATE payload and send it to the connected bot."""
        # 1. Work out who and where.
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        member = self._member_in(guild, user) if guild is not None else None
        person = member.user if member is not None else (user.user if isinstance(user, FakeMember) else user)
        if channel.deleted:
            raise ValueError(f"channel {channel.name!r} was deleted")
        # 2. Permissions as Discord computes them for the invoker and for the bot in this channel.
        if guild is not None and member is not None:
            permissions = guild.channel_permissions(member, channel)
            app_permissions = guild.channel_permissions(guild.members[self.bot_user.id], channel)
        else:
            permissions = app_permissions = _DM_PERMISSIONS
        # 3. The payload, with every key discord.py's Interaction._from_data reads.
        session = await self.wait_for_gateway(connect_timeout)
        interaction_id = self.ids.next()
        token = f"fake-ix-{interaction_id}-{secrets.token_urlsafe(24)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": int(kind),
            "data": data,
            "token": token,
            "version": 1,
            "channel": interaction_channel_payload(channel, permissions),
            "channel_id": str(channel.id),
            "locale": locale,
            "app_permissions": str(app_permissions),
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
            "context": 0 if guild is not None else 1,
            "attachment_size_limit": self.attachment_limit_for(channel),
        }
        if guild is not None and member is not None:
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": guild.preferred_locale, "features": []}
            payload["guild_locale"] = guild.preferred_locale
            payload["member"] = member.to_payload(permissions=permissions)
        else:
            payload["user"] = person.to_payload()
        if message is not None:
            payload["message"] = self.message_payload(message)
        # 4. Record, then send; the 3-second window starts now.
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            application_id=self.application_id,
            payload=payload,
            user=person,
            member=member,
            channel=channel,
            guild=guild,
            source_message_id=message.id if message is not None else None,
            dispatched_at=self.loop_time(),
            issued_at=self.clock.monotonic(),
            messages_by_id=self.messages,
            feed=self.feed,
        )
        self.interactions[interaction_id] = record
        self.interactions_by_token[token] = record
        session.dispatch("INTERACTION_CREATE", payload)
        self.feed.notify()
        return record

    def _command_for(
        self, command: str, subcommand: str | None, group: str | None, guild: FakeGuild | None
    ) -> tuple[RegisteredCommand, list[str]]:
        name, *rest = command.split()
        path = [*rest, *(p for p in (group, subcommand) if p)]
        registered = self.find_command(name, guild)
        if registered is None:
            known = sorted({c.name for c in self.commands.values()})
            raise LookupError(f"/{name} is not registered (registered: {known}); did the bot sync its tree?")
        return registered, path

    def _check_usable(
        self,
        command: RegisteredCommand,
        channel: FakeChannel,
        member: FakeMember | None,
        guild: FakeGuild | None,
        *,
        validate: bool,
        enforce_default_permissions: bool,
    ) -> None:
        """Refuse what a Discord client would not offer: wrong context, NSFW command outside NSFW."""
        definition = command.definition
        if validate:
            contexts = definition.get("contexts")
            context = 0 if guild is not None else 1
            if contexts is not None and context not in contexts:
                raise ValueError(f"/{command.name} is not available in this context ({context}); contexts={contexts}")
            if guild is None and contexts is None and definition.get("dm_permission") is False:
                raise ValueError(f"/{command.name} is disabled in DMs (dm_permission=false)")
            if definition.get("nsfw") and not channel.nsfw:
                raise ValueError(f"/{command.name} is age-restricted and #{channel.name} is not")
        required = definition.get("default_member_permissions")
        if enforce_default_permissions and required is not None and guild is not None and member is not None:
            needed = int(required)
            if guild.channel_permissions(member, channel) & needed != needed:
                raise PermissionError(
                    f"{member.user.username} lacks default_member_permissions={needed} for /{command.name}"
                )

    async def run_slash(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | FakeMember,
        channel: FakeChannel,
        subcommand: str | None = None,
        group: str | None = None,
        locale: str = "en-US",
        validate: bool = True,
        enforce_default_permissions: bool = False,
    ) -> InteractionRecord:
        """Invoke a slash command as ``user`` in ``channel`` and return at once (not waiting for the bot).

        ``command`` may include the subcommand path (``"quota set"``) or pass ``subcommand``/``group``.
        Option values are typed from the registered definition: users/members, roles, channels and
        :class:`FakeUpload` objects become ids plus ``resolved`` data. ``validate=False`` lets a
        test send values Discord's UI would refuse. Default member permissions are not enforced
        unless asked, because Discord does not enforce them for every client.
        """
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        member = self._member_in(guild, user) if guild is not None else None
        registered, path = self._command_for(command, subcommand, group, guild)
        self._check_usable(
            registered,
            channel,
            member,
            guild,
            validate=validate,
            enforce_default_permissions=enforce_default_permissions,
        )
        ctx = OptionContext(guild=guild, channel=channel, store_upload=lambda u: self._store_upload(u, channel))
        data = build_command_data(
            registered, path, dict(options or {}), ctx, invoker=member, focused=None, validate=validate
        )
        return await self._dispatch_interaction(
            InteractionType.APPLICATION_COMMAND, data, user=user, channel=channel, locale=locale
        )

    async def autocomplete(
        self,
        command: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: FakeUser | FakeMember,
        channel: FakeChannel,
        subcommand: str | None = None,
        group: str | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Send an AUTOCOMPLETE interaction while the user types ``options[focused]``.

        The choices come back as ``(await ix.wait_for_response()).choices``.
        """
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        member = self._member_in(guild, user) if guild is not None else None
        registered, path = self._command_for(command, subcommand, group, guild)
        ctx = OptionContext(guild=guild, channel=channel, store_upload=lambda u: self._store_upload(u, channel))
        data = build_command_data(registered, path, options, ctx, invoker=member, focused=focused, validate=False)
        return await self._dispatch_interaction(
            InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE, data, user=user, channel=channel, locale=locale
        )

    def _interactable(self, message: StoredMessage | int, user: FakeUser | FakeMember) -> StoredMessage:
        stored = self.messages.get(message if isinstance(message, int) else message.id)
        if stored is None or stored.deleted:
            raise ValueError(f"message {message!r} does not exist (or was deleted)")
        if stored.ephemeral and stored.interaction_metadata is not None:
            owner = int(stored.interaction_metadata["user"]["id"])
            person = user.user if isinstance(user, FakeMember) else user
            if owner != person.id:
                raise ValueError("only the user who triggered an ephemeral message can see or use it")
        return stored

    async def press_button(
        self,
        message: StoredMessage | int,
        custom_id: str | None = None,
        user: FakeUser | FakeMember | None = None,
        *,
        label: str | None = None,
        validate: bool = True,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Click a button (by ``custom_id``, or by ``label`` which also matches an emoji) as ``user``.

        The interaction carries the message as the fake currently holds it, components included,
        which is what ``DynamicItem`` dispatch and ``View.from_message`` rely on. Disabled buttons
        cannot be clicked unless ``validate=False``.
        """
        if user is None:
            raise TypeError("press_button needs the user who clicks")
        if custom_id is None and label is None:
            raise ValueError("name the button by custom_id or label")
        stored = self._interactable(message, user)
        button = stored.button(label=label, custom_id=custom_id)
        if button.get("style") == 5 or not button.get("custom_id"):
            raise ValueError("link and premium buttons do not create interactions")
        if validate and button.get("disabled"):
            raise ValueError(f"button {button.get('label')!r} is disabled")
        data: dict[str, Any] = {"custom_id": button["custom_id"], "component_type": 2}
        if "id" in button:
            data["id"] = button["id"]
        return await self._dispatch_interaction(
            InteractionType.MESSAGE_COMPONENT,
            data,
            user=user,
            channel=self.channels[stored.channel_id],
            message=stored,
            locale=locale,
        )

    async def choose(
        self,
        message: StoredMessage | int,
        custom_id: str,
        values: Sequence[str],
        *,
        user: FakeUser | FakeMember,
        validate: bool = True,
    ) -> InteractionRecord:
        """Pick ``values`` in a string select menu on a message."""
        stored = self._interactable(message, user)
        select = stored.component(custom_id)
        if select is None or select.get("type") != 3:
            raise LookupError(f"no string select {custom_id!r} on message {stored.id}")
        if validate:
            offered = {o["value"] for o in select.get("options", [])}
            if not set(values) <= offered:
                raise ValueError(f"{sorted(set(values) - offered)} are not options of {custom_id!r}")
            if not select.get("min_values", 1) <= len(values) <= select.get("max_values", 1):
                raise ValueError(f"{custom_id!r} takes between min_values and max_values choices")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": 3, "values": list(values)}
        return await self._dispatch_interaction(
            InteractionType.MESSAGE_COMPONENT, data, user=user, channel=self.channels[stored.channel_id], message=stored
        )

    async def submit_modal(
        self, interaction: InteractionRecord, values: Mapping[str, str], *, user: FakeUser | FakeMember | None = None
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in answer to ``interaction``."""
        modal = next((c for c in interaction.callbacks if c.type is CallbackType.MODAL), None)
        if modal is None:
            raise LookupError(f"interaction {interaction.id} was not answered with a modal")
        data = {"custom_id": modal.data["custom_id"], "components": modal_submit_components(modal.data, values)}
        source = self.messages.get(interaction.source_message_id or 0)
        return await self._dispatch_interaction(
            InteractionType.MODAL_SUBMIT,
            data,
            user=user or interaction.member or interaction.user,
            channel=interaction.channel,
            message=source,
        )
