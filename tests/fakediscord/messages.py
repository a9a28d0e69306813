"""Messages: what the bot posts, edits and deletes, the files it attaches, and how a test finds them.

The REST routes and interaction callbacks store messages through :class:`MessageStore`, which
validates them as Discord does and announces them on the gateway (MESSAGE_CREATE, MESSAGE_UPDATE,
MESSAGE_DELETE; never for ephemeral ones). Each edit keeps the previous state as a revision, and
:meth:`MessageStore.wait_for_message` re-checks after every change, so a test can wait for the state
it expects. Attachments are served back from their URLs, as Discord's CDN serves them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.fakediscord.changes import ChangeFeed
from tests.fakediscord.gateway import INTENT_DIRECT_MESSAGES, INTENT_GUILD_MESSAGES, Gateway
from tests.fakediscord.interactions import InteractionRecord
from tests.fakediscord.models import (
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    FakeChannel,
    FakeClock,
    FakeMember,
    FakeUpload,
    FakeUser,
    InteractionType,
    MessageFlag,
    MessageType,
    SnowflakeFactory,
    StoredAttachment,
    StoredMessage,
    UploadedFile,
    guess_content_type,
)
from tests.fakediscord.validation import DiscordAPIError, invalid_form, validate_message
from tests.fakediscord.world import World

_MENTION = re.compile(r"<@!?(\d+)>")
_CREATE_FLAGS = MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS | MessageFlag.IS_COMPONENTS_V2
_EDIT_FLAGS = MessageFlag.SUPPRESS_EMBEDS | MessageFlag.IS_COMPONENTS_V2
#: How long Discord remembers a nonce for ``enforce_nonce`` ("the past few minutes").
NONCE_WINDOW = dt.timedelta(minutes=5)


class MessageStore:
    """Every message and attachment, by id, and the operations Discord applies to them."""

    def __init__(
        self,
        *,
        world: World,
        ids: SnowflakeFactory,
        clock: FakeClock,
        feed: ChangeFeed,
        gateway: Gateway,
        base_url: Callable[[], str],
    ) -> None:
        """``base_url``: the server's address once it listens, for the attachments' URLs."""
        # (author id, nonce) -> the message created with it, for ``enforce_nonce``.
        self._nonces: dict[tuple[int, str], int] = {}
        self._world = world
        self._ids = ids
        self._clock = clock
        self._feed = feed
        self._gateway = gateway
        self._base_url = base_url
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.attachment_downloads: list[int] = []  # the ids of attachments fetched from the CDN, in order

    # -- attachments ---------------------------------------------------------------------------------

    def _new_attachment(
        self, channel_id: int, upload: UploadedFile, filename: str, description: str | None
    ) -> StoredAttachment:
        attachment_id = self._ids.next()
        attachment = StoredAttachment(
            id=attachment_id,
            filename=filename,
            content_type=guess_content_type(filename),
            data=upload.data,
            url=f"{self._base_url()}/attachments/{channel_id}/{attachment_id}/{quote(filename)}",
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

    def store_upload(self, upload: FakeUpload, channel: FakeChannel) -> StoredAttachment:
        """A file a user attached to a command option, stored so its URL can be downloaded."""
        raw = UploadedFile("files[0]", upload.filename, upload.content_type or "", upload.data)
        attachment = self._new_attachment(channel.id, raw, upload.filename, None)
        if upload.content_type:
            attachment.content_type = upload.content_type
        return attachment

    async def serve_attachment(self, request: web.Request) -> web.StreamResponse:
        """The CDN: ``Attachment.read()`` downloads from the URL the fake put in the payload."""
        attachment = self.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            return web.Response(status=404)
        self.attachment_downloads.append(attachment.id)
        return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})

    # -- messages (used by the REST handlers and by tests) ---------------------------------------

    def _mentions(self, content: str) -> list[FakeUser]:
        found = {int(m) for m in _MENTION.findall(content)}
        return [self._world.users[i] for i in found if i in self._world.users]

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
        """Validate and store a new message, then announce it on the gateway like Discord does.

        With ``enforce_nonce``, a message the same author created with the same nonce in the last
        few minutes is returned instead, and nothing new is created (Discord's duplicate guard).
        """
        nonce = body.get("nonce")
        key = (author.id, str(nonce)) if nonce is not None and body.get("enforce_nonce") else None
        if key is not None:
            earlier = self.messages.get(self._nonces.get(key, 0))
            if earlier is not None and self._clock.now() - earlier.created_at < NONCE_WINDOW:
                return earlier
        content = body.get("content")
        content = "" if content is None else str(content)
        embeds = list(body.get("embeds") or [])
        components = list(body.get("components") or [])
        mask = _CREATE_FLAGS | (MessageFlag.EPHEMERAL | MessageFlag.LOADING if allow_ephemeral else 0)
        flags = int(body.get("flags") or 0) & int(mask)
        message_id = self._ids.next()
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
            created_at=self._clock.now(),
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
        if key is not None:
            self._nonces[key] = message.id
        if not message.ephemeral:
            channel.last_message_id = message.id
            self._announce("MESSAGE_CREATE", channel, self._gateway_message(message))
        self._feed.notify()
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
        now = self._clock.now()
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
            self._announce("MESSAGE_UPDATE", self._world.channels[message.channel_id], self._gateway_message(message))
        self._feed.notify()

    def delete_message(self, message: StoredMessage) -> None:
        message.deleted = True
        if not message.ephemeral:
            payload: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id:
                payload["guild_id"] = str(message.guild_id)
            self._announce("MESSAGE_DELETE", self._world.channels[message.channel_id], payload)
        self._feed.notify()

    def bulk_delete_messages(self, messages: list[StoredMessage]) -> None:
        """A moderator's purge: the messages of one channel deleted at once, announced as one MESSAGE_DELETE_BULK."""
        channel_ids = {message.channel_id for message in messages}
        if len(channel_ids) != 1:
            raise ValueError("a bulk delete takes the messages of one channel")
        for message in messages:
            message.deleted = True
        channel = self._world.channels[channel_ids.pop()]
        payload: dict[str, Any] = {"ids": [str(message.id) for message in messages], "channel_id": str(channel.id)}
        if channel.guild_id is not None:
            payload["guild_id"] = str(channel.guild_id)
        self._announce("MESSAGE_DELETE_BULK", channel, payload)
        self._feed.notify()

    def message_payload(self, message: StoredMessage) -> dict[str, Any]:
        referenced = None
        if message.message_reference:
            referenced = self.messages.get(int(message.message_reference["message_id"]))
        return message.to_payload(referenced=referenced)

    def _gateway_message(self, message: StoredMessage) -> dict[str, Any]:
        payload = self.message_payload(message)
        guild = self._world.guilds.get(message.guild_id or 0)
        member = guild.member(message.author) if guild else None
        if member is not None:
            payload["member"] = member.to_payload(include_user=False)
        return payload

    def _announce(self, event: str, channel: FakeChannel, payload: dict[str, Any]) -> None:
        intent = INTENT_DIRECT_MESSAGES if channel.is_dm else INTENT_GUILD_MESSAGES
        self._gateway.broadcast(event, payload, intent=intent)

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

        return await self._feed.wait_until(check, timeout=timeout, what=f"a message in #{channel.name or channel.id}")


def message_type_for(ix: InteractionRecord | None, *, followup: bool) -> MessageType:
    """Slash command responses are CHAT_INPUT_COMMAND messages; everything else is DEFAULT here."""
    if ix is not None and ix.type is InteractionType.APPLICATION_COMMAND and not followup:
        return MessageType.CHAT_INPUT_COMMAND
    return MessageType.DEFAULT
