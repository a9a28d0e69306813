"""Routes under the bot token for channels, their messages, and guilds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakediscord.models import FakeChannel, Permission, StoredMessage
from tests.fakediscord.rest.request import ApiReply, ApiRequest
from tests.fakediscord.validation import DiscordAPIError

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord


class ChannelRoutes:
    """Channel, message and guild routes; each checks the bot's permissions as Discord does."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake

    # -- channels and messages (bot token) ------------------------------------------------------

    def _channel(self, request: ApiRequest) -> FakeChannel:
        channel = self._fake.channels.get(request.snowflake("channel_id"))
        if channel is None or channel.deleted:
            raise DiscordAPIError(404, 10003, "Unknown Channel")
        return channel

    def _require(self, channel: FakeChannel, needed: int) -> None:
        if channel.is_dm:
            return
        if self._fake.bot_permissions_in(channel) & needed != needed:
            raise DiscordAPIError(403, 50013, "Missing Permissions")

    def _channel_message(self, request: ApiRequest, channel: FakeChannel) -> StoredMessage:
        message = self._fake.messages.get(request.snowflake("message_id"))
        if message is None or message.deleted or message.ephemeral or message.channel_id != channel.id:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        return message

    async def get_channel(self, request: ApiRequest) -> ApiReply:
        channel = self._channel(request)
        self._require(channel, Permission.VIEW_CHANNEL)
        return ApiReply(200, channel.to_payload())

    async def list_messages(self, request: ApiRequest) -> ApiReply:
        channel = self._channel(request)
        self._require(channel, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        visible = self._fake.channel_messages(channel, include_ephemeral=False)
        if "before" in request.query:
            visible = [m for m in visible if m.id < int(request.query["before"])]
        if "after" in request.query:
            visible = [m for m in visible if m.id > int(request.query["after"])][:limit]
        newest_first = sorted(visible, key=lambda m: m.id, reverse=True)[:limit]
        return ApiReply(200, [self._fake.message_payload(m) for m in newest_first])

    async def create_message(self, request: ApiRequest) -> ApiReply:
        fake = self._fake
        channel = self._channel(request)
        needed = Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES
        if request.files:
            needed |= Permission.ATTACH_FILES
        self._require(channel, needed)
        if channel.is_dm and any(user.dms_closed for user in channel.recipients):
            raise DiscordAPIError(403, 50007, "Cannot send messages to this user")
        message = fake.create_message(
            channel, fake.bot_user, request.json, request.files, size_limit=fake.attachment_limit_for(channel)
        )
        return ApiReply(200, fake.message_payload(message))

    async def get_message(self, request: ApiRequest) -> ApiReply:
        channel = self._channel(request)
        self._require(channel, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        return ApiReply(200, self._fake.message_payload(self._channel_message(request, channel)))

    async def edit_message(self, request: ApiRequest) -> ApiReply:
        fake = self._fake
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        if message.author.id != fake.bot_user.id:
            raise DiscordAPIError(403, 50005, "Cannot edit a message authored by another user")
        fake.edit_message(
            message, request.json, request.files, via="channel", size_limit=fake.attachment_limit_for(channel)
        )
        return ApiReply(200, fake.message_payload(message))

    async def delete_message(self, request: ApiRequest) -> ApiReply:
        fake = self._fake
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        if message.author.id != fake.bot_user.id:
            self._require(channel, Permission.MANAGE_MESSAGES)
        fake.delete_message(message)
        return ApiReply(204)

    async def trigger_typing(self, request: ApiRequest) -> ApiReply:
        channel = self._channel(request)
        self._require(channel, Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES)
        return ApiReply(204)

    # -- guilds ------------------------------------------------------------------------------------

    def _guild(self, request: ApiRequest) -> Any:
        guild = self._fake.guilds.get(request.snowflake("guild_id"))
        if guild is None:
            raise DiscordAPIError(404, 10004, "Unknown Guild")
        return guild

    async def get_guild(self, request: ApiRequest) -> ApiReply:
        guild = self._guild(request)
        payload = guild.to_payload(bot_user_id=self._fake.bot_user.id, include_all_members=False)
        for key in ("channels", "members", "threads", "voice_states", "presences", "joined_at", "large"):
            payload.pop(key, None)
        return ApiReply(200, payload)

    async def get_guild_channels(self, request: ApiRequest) -> ApiReply:
        guild = self._guild(request)
        return ApiReply(200, [c.to_payload() for c in guild.channels.values() if not c.deleted])

    async def get_guild_roles(self, request: ApiRequest) -> ApiReply:
        guild = self._guild(request)
        return ApiReply(200, [r.to_payload() for r in guild.roles.values()])

    async def get_member(self, request: ApiRequest) -> ApiReply:
        guild = self._guild(request)
        member = guild.member(request.snowflake("user_id"))
        if member is None:
            raise DiscordAPIError(404, 10007, "Unknown Member")
        return ApiReply(200, member.to_payload())
