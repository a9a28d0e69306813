"""A Discord-compatible server on 127.0.0.1 for end-to-end tests with the real discord.py client.

Start with :class:`FakeDiscord` (or the ``fake_discord`` fixture in :mod:`.fixtures`), build a
world (:meth:`FakeDiscord.add_standard_guild`), run a client with :func:`.fixtures.running_client`,
then act as users (:meth:`FakeDiscord.run_slash`, :meth:`FakeDiscord.press_button`) and assert on
the records (:class:`InteractionRecord`, :class:`StoredMessage`, :attr:`FakeDiscord.calls`).

Inside: :mod:`.server` (the facade and its HTTP server) composes :mod:`.world` (guilds, channels,
members, roles, users, permissions, registered commands), :mod:`.messages` (stored messages and
attachments) and :mod:`.driver` (acting as a user); :mod:`.rest` and :mod:`.gateway` speak
Discord's protocols, :mod:`.oauth` its OAuth2 side (a web app's "Sign in with Discord"), :mod:`.interactions` builds interaction payloads, :mod:`.models` holds the
records, :mod:`.validation` Discord's limits, and :mod:`.fixtures` the pytest fixtures.
"""

from __future__ import annotations

from tests.fakediscord.interactions import InteractionRecord
from tests.fakediscord.models import (
    CallbackType,
    ChannelType,
    FakeChannel,
    FakeClock,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUpload,
    FakeUser,
    InteractionCallback,
    InteractionEvent,
    InteractionType,
    MessageFlag,
    MessageRevision,
    Permission,
    PermissionOverwrite,
    RegisteredCommand,
    RestCall,
    StoredAttachment,
    StoredMessage,
)
from tests.fakediscord.oauth import OAuth2Authorization, OAuth2Provider, OAuth2Token
from tests.fakediscord.server import FakeDiscord, GuildSetup
from tests.fakediscord.validation import DiscordAPIError

__all__ = [
    "CallbackType",
    "ChannelType",
    "DiscordAPIError",
    "FakeChannel",
    "FakeClock",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUpload",
    "FakeUser",
    "GuildSetup",
    "InteractionCallback",
    "InteractionEvent",
    "InteractionRecord",
    "InteractionType",
    "MessageFlag",
    "MessageRevision",
    "OAuth2Authorization",
    "OAuth2Provider",
    "OAuth2Token",
    "Permission",
    "PermissionOverwrite",
    "RegisteredCommand",
    "RestCall",
    "StoredAttachment",
    "StoredMessage",
]
