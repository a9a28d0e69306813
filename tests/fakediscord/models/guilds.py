"""Users, roles, channels, members and guilds: the records of the world a test builds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tests.fakediscord.models.clock import iso
from tests.fakediscord.models.codes import ALL_PERMISSIONS, DEFAULT_ATTACHMENT_SIZE_LIMIT, ChannelType, Permission


@dataclass(slots=True, eq=False)
class FakeUser:
    """A Discord user (a person or the bot itself)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    dms_closed: bool = False  # "allow direct messages from server members" off: the bot cannot DM them

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
