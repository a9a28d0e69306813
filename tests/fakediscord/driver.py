"""The users' side: what a test does as a person in Discord, and the interactions that come of it.

A real Discord client builds each interaction from the commands the bot registered and refuses
what its UI would not offer (an unknown option, a disabled button, an age-restricted command
outside an age-restricted channel); so does :class:`Driver`, unless a test passes
``validate=False`` to exercise the bot's own checks. Each method sends INTERACTION_CREATE to the
connected bot and returns its :class:`InteractionRecord` at once, without waiting for the answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.fakediscord.changes import ChangeFeed
from tests.fakediscord.gateway import (
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGE_REACTIONS,
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
from tests.fakediscord.messages import MessageStore
from tests.fakediscord.models import (
    DM_PERMISSIONS,
    CallbackType,
    FakeChannel,
    FakeClock,
    FakeGuild,
    FakeMember,
    FakeUser,
    InteractionType,
    RegisteredCommand,
    SnowflakeFactory,
    StoredMessage,
)
from tests.fakediscord.world import World


class Driver:
    """The users' Discord clients: slash commands, autocomplete, buttons, selects and modals."""

    def __init__(
        self,
        *,
        world: World,
        messages: MessageStore,
        ids: SnowflakeFactory,
        clock: FakeClock,
        feed: ChangeFeed,
        gateway: Gateway,
        loop_time: Callable[[], float],
    ) -> None:
        self._world = world
        self._messages = messages
        self._ids = ids
        self._clock = clock
        self._feed = feed
        self._gateway = gateway
        self._loop_time = loop_time
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}

    async def wait_for_gateway(self, timeout: float = 10.0) -> GatewaySession:
        """The connected, READY bot session (waits for one, e.g. while a restarted bot connects)."""
        return await self._feed.wait_until(self._gateway.active, timeout=timeout, what="a READY gateway session")

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
        guild = self._world.guild_of(channel)
        member = self._world.member_in(guild, user) if guild is not None else None
        person = member.user if member is not None else (user.user if isinstance(user, FakeMember) else user)
        if channel.deleted:
            raise ValueError(f"channel {channel.name!r} was deleted")
        # 2. Permissions as Discord computes them for the invoker and for the bot in this channel.
        if guild is not None and member is not None:
            permissions = guild.channel_permissions(member, channel)
            app_permissions = guild.channel_permissions(guild.members[self._world.bot_user.id], channel)
        else:
            permissions = app_permissions = DM_PERMISSIONS
        # 3. The payload, with every key discord.py's Interaction._from_data reads, for the session
        #    of the shard that owns the guild (shard 0 for a DM), as Discord routes interactions.
        session = await self._feed.wait_until(
            lambda: self._gateway.active_for(guild.id if guild is not None else None),
            timeout=connect_timeout,
            what="a READY gateway session for the interaction's guild",
        )
        interaction_id = self._ids.next()
        token = f"fake-ix-{interaction_id}-{secrets.token_urlsafe(24)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self._world.application_id),
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
            "attachment_size_limit": self._world.attachment_limit_for(channel),
        }
        if guild is not None and member is not None:
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": guild.preferred_locale, "features": []}
            payload["guild_locale"] = guild.preferred_locale
            payload["member"] = member.to_payload(permissions=permissions)
        else:
            payload["user"] = person.to_payload()
        if message is not None:
            payload["message"] = self._messages.message_payload(message)
        # 4. Record, then send; the 3-second window starts now.
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            application_id=self._world.application_id,
            payload=payload,
            user=person,
            member=member,
            channel=channel,
            guild=guild,
            source_message_id=message.id if message is not None else None,
            dispatched_at=self._loop_time(),
            issued_at=self._clock.monotonic(),
            messages_by_id=self._messages.messages,
            feed=self._feed,
        )
        self.interactions[interaction_id] = record
        self.interactions_by_token[token] = record
        session.dispatch("INTERACTION_CREATE", payload)
        self._feed.notify()
        return record

    def _command_for(
        self, command: str, subcommand: str | None, group: str | None, guild: FakeGuild | None
    ) -> tuple[RegisteredCommand, list[str]]:
        name, *rest = command.split()
        path = [*rest, *(p for p in (group, subcommand) if p)]
        registered = self._world.find_command(name, guild)
        if registered is None:
            known = sorted({c.name for c in self._world.commands.values()})
            raise LookupError(f"/{name} is not registered (registered: {known}); did the bot sync its tree?")
        return registered, path

    def _option_context(self, guild: FakeGuild | None, channel: FakeChannel) -> OptionContext:
        """Where option values resolve; an uploaded file is stored so the bot can download it."""
        return OptionContext(
            guild=guild, channel=channel, store_upload=lambda u: self._messages.store_upload(u, channel)
        )

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
        guild = self._world.guild_of(channel)
        member = self._world.member_in(guild, user) if guild is not None else None
        registered, path = self._command_for(command, subcommand, group, guild)
        self._check_usable(
            registered,
            channel,
            member,
            guild,
            validate=validate,
            enforce_default_permissions=enforce_default_permissions,
        )
        ctx = self._option_context(guild, channel)
        data = build_command_data(
            registered, path, dict(options or {}), ctx, invoker=member, focused=None, validate=validate
        )
        return await self._dispatch_interaction(
            InteractionType.APPLICATION_COMMAND, data, user=user, channel=channel, locale=locale
        )

    async def run_message_command(
        self, name: str, message: StoredMessage, *, user: FakeUser | FakeMember, channel: FakeChannel | None = None
    ) -> InteractionRecord:
        """Invoke the message context menu command ``name`` (type 3) on ``message``, as a client's "Apps" menu does."""
        channel = channel or self._world.channels[message.channel_id]
        guild = self._world.guild_of(channel)
        scopes = [guild.id, None] if guild is not None else [None]
        registered = next(
            (
                command
                for scope in scopes
                for command in self._world.commands.values()
                if command.guild_id == scope and command.name == name and command.type == 3
            ),
            None,
        )
        if registered is None:
            raise LookupError(f"no message command {name!r} is registered; did the bot sync its tree?")
        data = {
            "id": str(registered.id),
            "name": name,
            "type": 3,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): self._messages.message_payload(message)}},
        }
        return await self._dispatch_interaction(InteractionType.APPLICATION_COMMAND, data, user=user, channel=channel)

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
        guild = self._world.guild_of(channel)
        member = self._world.member_in(guild, user) if guild is not None else None
        registered, path = self._command_for(command, subcommand, group, guild)
        ctx = self._option_context(guild, channel)
        data = build_command_data(registered, path, options, ctx, invoker=member, focused=focused, validate=False)
        return await self._dispatch_interaction(
            InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE, data, user=user, channel=channel, locale=locale
        )

    def _interactable(self, message: StoredMessage | int, user: FakeUser | FakeMember) -> StoredMessage:
        stored = self._messages.messages.get(message if isinstance(message, int) else message.id)
        if stored is None or stored.deleted:
            raise ValueError(f"message {message!r} does not exist (or was deleted)")
        if stored.ephemeral and stored.interaction_metadata is not None:
            owner = int(stored.interaction_metadata["user"]["id"])
            person = user.user if isinstance(user, FakeMember) else user
            if owner != person.id:
                raise ValueError("only the user who triggered an ephemeral message can see or use it")
        return stored

    async def _component_interaction(
        self, stored: StoredMessage, data: dict[str, Any], user: FakeUser | FakeMember, locale: str = "en-US"
    ) -> InteractionRecord:
        """A MESSAGE_COMPONENT interaction on ``stored``, sent from the channel it is in."""
        return await self._dispatch_interaction(
            InteractionType.MESSAGE_COMPONENT,
            data,
            user=user,
            channel=self._world.channels[stored.channel_id],
            message=stored,
            locale=locale,
        )

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
        return await self._component_interaction(stored, data, user, locale)

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
        return await self._component_interaction(stored, data, user)

    async def press_stale(
        self,
        message: StoredMessage | int,
        custom_id: str,
        *,
        user: FakeUser | FakeMember,
        values: Sequence[str] | None = None,
    ) -> InteractionRecord:
        """Use a component that ``user``'s client still shows, whether or not the message still carries it.

        A client that has not caught up with an edit (a Cancel pressed as the grid replaced the
        status message, a stale tab, a button an edit removed) sends the custom id it shows, and
        Discord attaches the message as it holds it now: the id need not be among its components.
        A button, or a string select when ``values`` are given.
        """
        stored = self._interactable(message, user)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": 2 if values is None else 3}
        if values is not None:
            data["values"] = list(values)
        return await self._component_interaction(stored, data, user)

    async def react(self, message: StoredMessage | int, emoji: str, *, user: FakeUser | FakeMember) -> None:
        """Add a reaction to a message, as a user's client does: MESSAGE_REACTION_ADD to sessions with the intent."""
        stored = self._messages.messages[message] if isinstance(message, int) else message
        person = user.user if isinstance(user, FakeMember) else user
        data: dict[str, Any] = {
            "user_id": str(person.id),
            "channel_id": str(stored.channel_id),
            "message_id": str(stored.id),
            "message_author_id": str(stored.author.id),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        intent = INTENT_DIRECT_MESSAGE_REACTIONS
        if stored.guild_id is not None:
            guild = self._world.guilds[stored.guild_id]
            data["guild_id"] = str(stored.guild_id)
            data["member"] = self._world.member_in(guild, person).to_payload()
            intent = INTENT_GUILD_MESSAGE_REACTIONS
        self._gateway.broadcast("MESSAGE_REACTION_ADD", data, intent=intent)

    async def submit_modal(
        self, interaction: InteractionRecord, values: Mapping[str, str], *, user: FakeUser | FakeMember | None = None
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in answer to ``interaction``."""
        modal = next((c for c in interaction.callbacks if c.type is CallbackType.MODAL), None)
        if modal is None:
            raise LookupError(f"interaction {interaction.id} was not answered with a modal")
        data = {"custom_id": modal.data["custom_id"], "components": modal_submit_components(modal.data, values)}
        source = self._messages.messages.get(interaction.source_message_id or 0)
        return await self._dispatch_interaction(
            InteractionType.MODAL_SUBMIT,
            data,
            user=user or interaction.member or interaction.user,
            channel=interaction.channel,
            message=source,
        )
