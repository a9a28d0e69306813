"""The fake's world: users, guilds, channels, messages and interactions, as plain records.

Everything the fake server knows lives in these dataclasses so that a test can inspect it directly
(``message.attachments[0].data``, ``ix.callbacks[0].elapsed``) instead of re-parsing HTTP traffic.
Each record renders itself into the JSON shape Discord's API uses (``to_payload``); those shapes
follow what discord.py 2.7 reads (``discord/types/*.py`` and the ``_from_data``/``__init__`` of
the model classes), including keys it indexes without ``.get`` and would crash on if missing.

The records live by subject: :mod:`.codes` (Discord's enums and permission bits), :mod:`.clock`
(time and snowflakes), :mod:`.guilds` (users, roles, channels, members, guilds), :mod:`.messages`
(messages, attachments, uploads) and :mod:`.records` (commands, callbacks, REST calls); import
them from here.
"""

from __future__ import annotations

from tests.fakediscord.models.clock import (
    DISCORD_EPOCH_MS,
    FakeClock,
    SnowflakeFactory,
    iso,
)
from tests.fakediscord.models.codes import (
    ALL_PERMISSIONS,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM_PERMISSIONS,
    CallbackType,
    ChannelType,
    InteractionType,
    MessageFlag,
    MessageType,
    OptionType,
    Permission,
)
from tests.fakediscord.models.guilds import (
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    PermissionOverwrite,
)
from tests.fakediscord.models.messages import (
    MessageRevision,
    StoredAttachment,
    StoredMessage,
    UploadedFile,
    guess_content_type,
    png_size,
    walk_components,
)
from tests.fakediscord.models.records import (
    FakeUpload,
    InteractionCallback,
    InteractionEvent,
    RegisteredCommand,
    RestCall,
)

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_ATTACHMENT_SIZE_LIMIT",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "DISCORD_EPOCH_MS",
    "DM_PERMISSIONS",
    "CallbackType",
    "ChannelType",
    "FakeChannel",
    "FakeClock",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUpload",
    "FakeUser",
    "InteractionCallback",
    "InteractionEvent",
    "InteractionType",
    "MessageFlag",
    "MessageRevision",
    "MessageType",
    "OptionType",
    "Permission",
    "PermissionOverwrite",
    "RegisteredCommand",
    "RestCall",
    "SnowflakeFactory",
    "StoredAttachment",
    "StoredMessage",
    "UploadedFile",
    "guess_content_type",
    "iso",
    "png_size",
    "walk_components",
]
