"""The world a test builds: users, guilds, channels, roles, members, what each may do, and the app.

Each change is announced on the gateway the way Discord announces it (GUILD_CREATE,
CHANNEL_UPDATE, GUILD_MEMBER_ADD...), so a running bot sees it. The application itself (the bot
user, its owner, the commands the bot registered over REST) lives here too: it is what a user's
client looks commands up in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tests.fakediscord.changes import ChangeFeed
from tests.fakediscord.gateway import INTENT_GUILD_MEMBERS, Gateway
from tests.fakediscord.models import (
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM_PERMISSIONS,
    ChannelType,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    Permission,
    PermissionOverwrite,
    RegisteredCommand,
    SnowflakeFactory,
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


class World:
    """Users, guilds, channels and the application, keyed by id, with the changes a test makes to them."""

    def __init__(self, *, ids: SnowflakeFactory, feed: ChangeFeed, gateway: Gateway, bot_name: str) -> None:
        self._ids = ids
        self._feed = feed
        self._gateway = gateway
        self.bot_user = FakeUser(id=ids.next(), username=bot_name, bot=True)
        self.application_id = self.bot_user.id
        self.application_owner = FakeUser(id=ids.next(), username="app-owner")
        self.users: dict[int, FakeUser] = {u.id: u for u in (self.bot_user, self.application_owner)}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.commands: dict[int, RegisteredCommand] = {}
        self.command_overwrites = 0
        """How many bulk overwrites (``tree.sync()``) the bot has done."""

    # -- building the world ----------------------------------------------------------------------

    def add_user(self, username: str, *, global_name: str | None = None, bot: bool = False) -> FakeUser:
        user = FakeUser(id=self._ids.next(), username=username, global_name=global_name, bot=bot)
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
        guild = FakeGuild(
            id=self._ids.next(), name=name, owner_id=owner.id, attachment_size_limit=attachment_size_limit
        )
        guild.roles[guild.id] = FakeRole(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=everyone_permissions
        )
        bot_role = FakeRole(
            id=self._ids.next(), guild_id=guild.id, name=self.bot_user.username, permissions=bot_permissions,
            position=1, managed=True,
        )  # fmt: skip
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = FakeMember(user=self.bot_user, guild_id=guild.id, roles=[bot_role.id])
        guild.members[owner.id] = FakeMember(user=owner, guild_id=guild.id)
        self.guilds[guild.id] = guild
        for session in self._gateway.sessions.values():
            if session.ready and session.owns(guild.id):
                include = session.wants(INTENT_GUILD_MEMBERS)
                session.dispatch(
                    "GUILD_CREATE", guild.to_payload(bot_user_id=self.bot_user.id, include_all_members=include)
                )
        self._feed.notify()
        return guild

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int = 0, position: int | None = None) -> FakeRole:
        role = FakeRole(
            id=self._ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=position if position is not None else len(guild.roles),
        )
        guild.roles[role.id] = role
        self._gateway.broadcast("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.to_payload()})
        return role

    def update_role(self, role: FakeRole, *, permissions: int) -> None:
        role.permissions = permissions
        self._gateway.broadcast("GUILD_ROLE_UPDATE", {"guild_id": str(role.guild_id), "role": role.to_payload()})

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
            id=self._ids.next(),
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
        self._gateway.broadcast("CHANNEL_CREATE", channel.to_payload())
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
        self._gateway.broadcast("CHANNEL_UPDATE", channel.to_payload())

    def delete_channel(self, channel: FakeChannel) -> None:
        """Delete a channel; later requests to it get 404 Unknown Channel."""
        channel.deleted = True
        if channel.guild_id is not None:
            self.guilds[channel.guild_id].channels.pop(channel.id, None)
        self._gateway.broadcast("CHANNEL_DELETE", channel.to_payload())

    def add_member(
        self, guild: FakeGuild, user: FakeUser | str, *, roles: Iterable[FakeRole] = (), nick: str | None = None
    ) -> FakeMember:
        """Add a user (or a new user with this name) to ``guild``."""
        if isinstance(user, str):
            user = self.add_user(user)
        member = FakeMember(user=user, guild_id=guild.id, roles=[r.id for r in roles], nick=nick)
        guild.members[user.id] = member
        self._gateway.broadcast(
            "GUILD_MEMBER_ADD", {**member.to_payload(), "guild_id": str(guild.id)}, intent=INTENT_GUILD_MEMBERS
        )
        return member

    def remove_member(self, member: FakeMember) -> None:
        """The member leaves (or is kicked from) their guild."""
        self.guilds[member.guild_id].members.pop(member.id, None)
        self._gateway.broadcast(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(member.guild_id), "user": member.user.to_payload()},
            intent=INTENT_GUILD_MEMBERS,
        )

    def set_member_roles(self, member: FakeMember, roles: Iterable[FakeRole]) -> None:
        member.roles = [r.id for r in roles]
        self._gateway.broadcast(
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
        channel = FakeChannel(id=self._ids.next(), name="", type=ChannelType.DM, recipients=[user])
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
            return DM_PERMISSIONS
        guild = self.guilds[channel.guild_id]
        return guild.channel_permissions(guild.members[self.bot_user.id], channel)

    def attachment_limit_for(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DEFAULT_ATTACHMENT_SIZE_LIMIT
        return self.guilds[channel.guild_id].attachment_size_limit

    def guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        """The guild ``channel`` belongs to; None for a DM."""
        return self.guilds.get(channel.guild_id) if channel.guild_id is not None else None

    def member_in(self, guild: FakeGuild, user: FakeUser | FakeMember) -> FakeMember:
        """``user``'s membership of ``guild``; a test acting as a non-member is a mistake in the test."""
        member = guild.member(user)
        if member is None:
            raise ValueError(f"{user!r} is not a member of {guild.name!r}; use add_member first")
        return member

    # -- the application's commands ----------------------------------------------------------------

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
