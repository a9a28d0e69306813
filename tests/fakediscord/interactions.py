"""Interactions the fake sends to the bot, and the record of how the bot answered each one.

Payloads are built the way Discord builds them: application command options are typed from the
command definitions the bot registered (so ``count=2`` arrives as an INTEGER only if the bot
declared it so), entity options carry ``resolved`` data, and a test cannot send what a real Discord
client would refuse (an unknown option, a value outside ``choices`` or ``min_value``/``max_value``)
unless it passes ``validate=False`` to exercise the bot's own validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakediscord.changes import ChangeFeed
from tests.fakediscord.models import (
    ChannelType,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUpload,
    FakeUser,
    InteractionCallback,
    InteractionEvent,
    InteractionType,
    OptionType,
    RegisteredCommand,
    StoredAttachment,
    StoredMessage,
)


@dataclass(slots=True, eq=False)
class InteractionRecord:
    """One interaction the fake dispatched, and everything the bot did with it.

    ``callbacks`` are the POSTs to the callback route in order (normally exactly one);
    ``events`` additionally lists follow-ups and edits/deletes through the interaction webhook.
    """

    id: int
    token: str
    type: InteractionType
    application_id: int
    payload: dict[str, Any] = field(repr=False)
    user: FakeUser
    member: FakeMember | None
    channel: FakeChannel = field(repr=False)
    guild: FakeGuild | None = field(repr=False)
    source_message_id: int | None
    dispatched_at: float
    """``loop.time()`` when INTERACTION_CREATE was sent (real time; the 3-second window is measured from here)."""
    issued_at: float
    """The fake clock's monotonic time at dispatch; token expiry is measured on that clock."""
    messages_by_id: Mapping[int, StoredMessage] = field(repr=False)
    feed: ChangeFeed = field(repr=False)
    callbacks: list[InteractionCallback] = field(default_factory=list)
    events: list[InteractionEvent] = field(default_factory=list, repr=False)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)

    @property
    def response(self) -> InteractionCallback | None:
        """The first callback, which is the one Discord requires within 3 seconds."""
        return self.callbacks[0] if self.callbacks else None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def original_message(self) -> StoredMessage | None:
        """What ``@original`` points at: the response message, or the clicked message for type 6/7."""
        if self.original_message_id is None:
            return None
        return self.messages_by_id.get(self.original_message_id)

    @property
    def followups(self) -> list[StoredMessage]:
        return [self.messages_by_id[i] for i in self.followup_ids if i in self.messages_by_id]

    @property
    def messages(self) -> list[StoredMessage]:
        """The original response (if it is a message) and every follow-up, oldest first."""
        found = [self.original_message] if self.original_message is not None else []
        return found + [m for m in self.followups if m.id != self.original_message_id]

    async def wait_for_response(self, timeout: float = 3.0) -> InteractionCallback:
        """The first callback; the default timeout is Discord's acknowledgement window."""
        return await self.feed.wait_until(
            lambda: self.response, timeout=timeout, what=f"a callback to interaction {self.id}"
        )

    async def wait_for_original(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        timeout: float = 5.0,
    ) -> StoredMessage:
        """The ``@original`` message once it satisfies ``predicate`` (re-checked after every edit)."""

        def check() -> StoredMessage | None:
            message = self.original_message
            if message is not None and (predicate is None or predicate(message)):
                return message
            return None

        return await self.feed.wait_until(check, timeout=timeout, what=f"the original response of {self.id}")

    async def wait_for_followup(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        timeout: float = 5.0,
    ) -> StoredMessage:
        """The first follow-up (``interaction.followup.send``) that satisfies ``predicate``."""

        def check() -> StoredMessage | None:
            return next((m for m in self.followups if predicate is None or predicate(m)), None)

        return await self.feed.wait_until(check, timeout=timeout, what=f"a follow-up to interaction {self.id}")

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        timeout: float = 5.0,
    ) -> StoredMessage:
        """Any message of this interaction (original or follow-up) that satisfies ``predicate``."""

        def check() -> StoredMessage | None:
            return next((m for m in self.messages if predicate is None or predicate(m)), None)

        return await self.feed.wait_until(check, timeout=timeout, what=f"a message of interaction {self.id}")


Mentionable = FakeUser | FakeMember | FakeRole


@dataclass(slots=True)
class OptionContext:
    """What option conversion needs to know about the place the command is used."""

    guild: FakeGuild | None
    channel: FakeChannel
    store_upload: Callable[[FakeUpload], StoredAttachment]
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _add(self, kind: str, key: int, payload: dict[str, Any]) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = payload

    def resolve_user(self, value: FakeUser | FakeMember | int) -> str:
        if isinstance(value, int):
            member = self.guild.member(value) if self.guild else None
            if member is None:
                raise ValueError(f"user id {value} is unknown to the fake; pass a FakeUser or FakeMember")
            value = member
        user = value.user if isinstance(value, FakeMember) else value
        self._add("users", user.id, user.to_payload())
        member = self.guild.member(user) if self.guild else None
        if member is not None and self.guild is not None:
            perms = self.guild.channel_permissions(member, self.channel)
            self._add("members", user.id, member.to_payload(include_user=False, permissions=perms))
        return str(user.id)

    def resolve_role(self, value: FakeRole) -> str:
        self._add("roles", value.id, value.to_payload())
        return str(value.id)

    def resolve_channel(self, value: FakeChannel, invoker: FakeMember | None) -> str:
        payload: dict[str, Any] = {
            "id": str(value.id),
            "name": value.name,
            "type": int(value.type),
            "nsfw": value.nsfw,
            "parent_id": str(value.parent_id) if value.parent_id else None,
            "permissions": "0",
            "flags": 0,
        }
        if self.guild is not None and invoker is not None:
            payload["permissions"] = str(self.guild.channel_permissions(invoker, value))
            payload["guild_id"] = str(self.guild.id)
        self._add("channels", value.id, payload)
        return str(value.id)

    def resolve_attachment(self, value: FakeUpload) -> str:
        stored = self.store_upload(value)
        self._add("attachments", stored.id, stored.to_payload())
        return str(stored.id)


def _check_bounds(name: str, definition: Mapping[str, Any], value: Any) -> None:
    """Reject what Discord's client would not let a user submit."""
    choices = definition.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(f"option {name!r}: {value!r} is not one of {[c['value'] for c in choices]}")
    if isinstance(value, str):
        if "min_length" in definition and len(value) < definition["min_length"]:
            raise ValueError(f"option {name!r}: shorter than min_length {definition['min_length']}")
        if "max_length" in definition and len(value) > definition["max_length"]:
            raise ValueError(f"option {name!r}: longer than max_length {definition['max_length']}")
        if len(value) > 6000:
            raise ValueError(f"option {name!r}: Discord caps string options at 6000 characters")
    elif isinstance(value, int | float):
        if "min_value" in definition and value < definition["min_value"]:
            raise ValueError(f"option {name!r}: {value} is below min_value {definition['min_value']}")
        if "max_value" in definition and value > definition["max_value"]:
            raise ValueError(f"option {name!r}: {value} is above max_value {definition['max_value']}")


def convert_option(
    name: str, definition: Mapping[str, Any], value: Any, ctx: OptionContext, invoker: FakeMember | None, validate: bool
) -> Any:
    """One option's wire value, registering entity options in ``resolved`` as Discord does."""
    kind = OptionType(int(definition["type"]))
    if kind is OptionType.STRING:
        converted: Any = str(value)
    elif kind is OptionType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"option {name!r} is an INTEGER; got {value!r}")
        converted = value
    elif kind is OptionType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"option {name!r} is a NUMBER; got {value!r}")
        converted = float(value)
    elif kind is OptionType.BOOLEAN:
        if not isinstance(value, bool):
            raise TypeError(f"option {name!r} is a BOOLEAN; got {value!r}")
        return value
    elif kind is OptionType.USER:
        if not isinstance(value, FakeUser | FakeMember | int):
            raise TypeError(f"option {name!r} is a USER; pass a FakeUser or FakeMember, got {value!r}")
        return ctx.resolve_user(value)
    elif kind is OptionType.ROLE:
        if not isinstance(value, FakeRole):
            raise TypeError(f"option {name!r} is a ROLE; pass a FakeRole, got {value!r}")
        return ctx.resolve_role(value)
    elif kind is OptionType.MENTIONABLE:
        if isinstance(value, FakeRole):
            return ctx.resolve_role(value)
        if isinstance(value, FakeUser | FakeMember):
            return ctx.resolve_user(value)
        raise TypeError(f"option {name!r} is MENTIONABLE; pass a user, member or role, got {value!r}")
    elif kind is OptionType.CHANNEL:
        if not isinstance(value, FakeChannel):
            raise TypeError(f"option {name!r} is a CHANNEL; pass a FakeChannel, got {value!r}")
        allowed = definition.get("channel_types")
        if validate and allowed and int(value.type) not in allowed:
            raise ValueError(f"option {name!r} only accepts channel types {allowed}")
        return ctx.resolve_channel(value, invoker)
    elif kind is OptionType.ATTACHMENT:
        if not isinstance(value, FakeUpload):
            raise TypeError(f"option {name!r} is an ATTACHMENT; pass a FakeUpload, got {value!r}")
        return ctx.resolve_attachment(value)
    else:
        raise TypeError(f"option {name!r} has type {kind.name}, which is not a value option")
    if validate:
        _check_bounds(name, definition, converted)
    return converted


def build_options(
    definitions: list[dict[str, Any]],
    values: Mapping[str, Any],
    ctx: OptionContext,
    *,
    invoker: FakeMember | None,
    focused: str | None,
    validate: bool,
) -> list[dict[str, Any]]:
    """The ``options`` array for one (sub)command, in definition order."""
    by_name = {d["name"]: d for d in definitions}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; the command declares {sorted(by_name)}")
    if focused is not None and focused not in values:
        raise ValueError(f"the focused option {focused!r} needs a (partial) value in options")
    built: list[dict[str, Any]] = []
    for definition in definitions:
        name = definition["name"]
        if name not in values:
            if validate and focused is None and definition.get("required"):
                raise ValueError(f"required option {name!r} is missing")
            continue
        if name == focused:
            # Discord sends whatever the user has typed so far, as text, for the focused option.
            built.append({"name": name, "type": int(definition["type"]), "value": str(values[name]), "focused": True})
            continue
        value = convert_option(name, definition, values[name], ctx, invoker, validate and focused is None)
        built.append({"name": name, "type": int(definition["type"]), "value": value})
    return built


def build_command_data(
    command: RegisteredCommand,
    path: list[str],
    values: Mapping[str, Any],
    ctx: OptionContext,
    *,
    invoker: FakeMember | None,
    focused: str | None,
    validate: bool,
) -> dict[str, Any]:
    """The ``data`` of an APPLICATION_COMMAND or AUTOCOMPLETE interaction.

    ``path`` names the subcommand group and/or subcommand below the top-level command.
    """
    definitions = command.options
    wrappers: list[dict[str, Any]] = []
    for depth, part in enumerate(path):
        wanted = (OptionType.SUB_COMMAND_GROUP, OptionType.SUB_COMMAND) if depth == 0 else (OptionType.SUB_COMMAND,)
        match = next((d for d in definitions if d["name"] == part and int(d["type"]) in wanted), None)
        if match is None:
            names = [d["name"] for d in definitions if int(d["type"]) in wanted]
            raise ValueError(f"/{command.name} has no subcommand {part!r} here; it has {names}")
        wrappers.append({"type": int(match["type"]), "name": part})
        definitions = list(match.get("options") or [])
    if any(int(d["type"]) in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP) for d in definitions):
        names = [d["name"] for d in definitions]
        raise ValueError(f"/{' '.join([command.name, *path])} needs a subcommand: one of {names}")

    options = build_options(definitions, values, ctx, invoker=invoker, focused=focused, validate=validate)
    for wrapper in reversed(wrappers):
        wrapper["options"] = options
        options = [wrapper]

    data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": command.type, "options": options}
    if ctx.resolved:
        data["resolved"] = ctx.resolved
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    return data


def interaction_channel_payload(channel: FakeChannel, permissions: int) -> dict[str, Any]:
    """The partial channel Discord embeds in an interaction, including the invoker's permissions."""
    payload = channel.to_payload()
    if channel.type is not ChannelType.DM:
        payload["permissions"] = str(permissions)
    return payload


def modal_submit_components(modal: Mapping[str, Any], values: Mapping[str, str]) -> list[dict[str, Any]]:
    """Mirror a modal's layout with the typed values, as a MODAL_SUBMIT's ``data.components``."""
    used: set[str] = set()

    def fill(component: Mapping[str, Any]) -> dict[str, Any] | None:
        kind = component.get("type")
        if kind == 1:
            children = [c for c in (fill(x) for x in component.get("components", [])) if c is not None]
            return {"type": 1, "components": children}
        if kind == 18:
            inner = fill(component.get("component", {}))
            return None if inner is None else {"type": 18, "component": inner}
        if kind == 4:
            custom_id = str(component["custom_id"])
            used.add(custom_id)
            value = values.get(custom_id, component.get("value") or "")
            if component.get("required", True) and not value:
                raise ValueError(f"text input {custom_id!r} is required")
            return {"type": 4, "custom_id": custom_id, "value": value}
        return None

    filled = [c for c in (fill(x) for x in modal.get("components", [])) if c is not None]
    unknown = sorted(set(values) - used)
    if unknown:
        raise ValueError(f"the modal has no text input(s) {unknown}; it has {sorted(used)}")
    return filled
