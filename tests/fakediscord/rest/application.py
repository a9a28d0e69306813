"""Routes of the application itself: users, the gateway URL, the application and its commands.

``users/@me`` and ``users/@me/guilds`` answer a bot token (the bot) and an OAuth2 bearer token
(the user who granted it, :mod:`tests.fakediscord.oauth`) alike, as Discord does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.fakediscord.models import FakeGuild, FakeUser, RegisteredCommand
from tests.fakediscord.rest.request import ApiReply, ApiRequest
from tests.fakediscord.validation import DiscordAPIError, invalid_form

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord


class ApplicationRoutes:
    """User, gateway, application and application-command routes (bot token)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake

    # -- users, gateway, application ------------------------------------------------------------

    async def get_gateway(self, _: ApiRequest) -> ApiReply:
        return ApiReply(200, {"url": self._fake.gateway_url})

    async def get_gateway_bot(self, _: ApiRequest) -> ApiReply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        shards = self._fake.recommended_shards  # what Discord recommends; a test sets it to make a bot shard
        return ApiReply(200, {"url": self._fake.gateway_url, "shards": shards, "session_start_limit": limit})

    def _caller(self, request: ApiRequest) -> tuple[FakeUser, frozenset[str] | None]:
        """Who calls: a bearer token's user and its scopes, or the bot (scopes None) for a bot token."""
        fake = self._fake
        token = fake.oauth.bearer(request.authorization)
        if token is not None:
            return fake.oauth.user_of(token), frozenset(token.scopes)
        if not fake.accepts_authorization(request.authorization):
            raise DiscordAPIError(401, 0, "401: Unauthorized")
        return fake.bot_user, None

    async def get_current_user(self, request: ApiRequest) -> ApiReply:
        user, scopes = self._caller(request)
        if scopes is None:
            bot = user.to_payload()
            return ApiReply(200, {**bot, "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})
        payload = {**user.to_payload(), "mfa_enabled": False, "locale": "en-US", "premium_type": 0}
        if "email" in scopes:  # Discord sends email and verified only to a token with the email scope
            payload |= {"email": f"{user.username}@users.fakediscord.invalid", "verified": True}
        return ApiReply(200, payload)

    async def get_current_user_guilds(self, request: ApiRequest) -> ApiReply:
        """The caller's guilds as partial guilds, by id, paged by ``before``/``after``/``limit`` as Discord pages them."""
        user, scopes = self._caller(request)
        if scopes is not None and "guilds" not in scopes:
            raise DiscordAPIError(403, 50001, "Missing Access")
        limit = _query_int(request, "limit", default=200, low=1, high=200)
        after = _query_int(request, "after", default=0, low=0, snowflake=True)
        before = _query_int(request, "before", default=0, low=0, snowflake=True)
        guilds = sorted((g for g in self._fake.guilds.values() if user.id in g.members), key=lambda g: g.id)
        guilds = [g for g in guilds if g.id > after and (not before or g.id < before)]
        page = guilds[-limit:] if before and not after else guilds[:limit]
        with_counts = request.query.get("with_counts", "").lower() == "true"
        return ApiReply(200, [self._partial_guild(g, user, with_counts) for g in page])

    @staticmethod
    def _partial_guild(guild: FakeGuild, user: FakeUser, with_counts: bool) -> dict[str, Any]:
        member = guild.members[user.id]
        payload: dict[str, Any] = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "banner": None,
            "owner": guild.owner_id == user.id,
            "permissions": str(guild.base_permissions(member)),
            "features": [],
        }
        if with_counts:
            payload |= {"approximate_member_count": len(guild.members), "approximate_presence_count": 0}
        return payload

    async def get_user(self, request: ApiRequest) -> ApiReply:
        user = self._fake.users.get(request.snowflake("user_id"))
        if user is None:
            raise DiscordAPIError(404, 10013, "Unknown User")
        return ApiReply(200, user.to_payload())

    async def create_dm(self, request: ApiRequest) -> ApiReply:
        user = self._fake.users.get(int(request.json.get("recipient_id") or 0))
        if user is None:
            raise DiscordAPIError(404, 10013, "Unknown User")
        return ApiReply(200, self._fake.dm_channel(user).to_payload())

    async def get_application(self, _: ApiRequest) -> ApiReply:
        fake = self._fake
        return ApiReply(
            200,
            {
                "id": str(fake.application_id),
                "name": fake.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "bot": fake.bot_user.to_payload(),
                "owner": fake.application_owner.to_payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": fake.application_flags,
                "tags": [],
                "redirect_uris": sorted(fake.oauth.redirect_uris or ()),
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(fake.guilds),
            },
        )

    # -- application commands -------------------------------------------------------------------

    def _command_scope(self, request: ApiRequest) -> int | None:
        if request.snowflake("application_id") != self._fake.application_id:
            raise DiscordAPIError(403, 50001, "Missing Access")
        if "guild_id" not in request.params:
            return None
        guild_id = request.snowflake("guild_id")
        if guild_id not in self._fake.guilds:
            raise DiscordAPIError(403, 50001, "Missing Access")
        return guild_id

    @staticmethod
    def _validate_command(index: int, definition: Any) -> dict[str, Any]:
        if not isinstance(definition, dict) or not isinstance(definition.get("name"), str):
            raise invalid_form(f"{index}.name", "This field is required")
        name = definition["name"]
        kind = int(definition.get("type", 1))
        if kind == 1:
            if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
                raise invalid_form(f"{index}.name", "Command name is invalid")
            if not 1 <= len(definition.get("description") or "") <= 100:
                raise invalid_form(f"{index}.description", "Must be between 1 and 100 in length.")
        if len(definition.get("options") or []) > 25:
            raise invalid_form(f"{index}.options", "Must be 25 or fewer in length.")
        return definition

    def _store_command(self, guild_id: int | None, definition: dict[str, Any]) -> tuple[RegisteredCommand, bool]:
        """Create or replace by (name, type) within the scope, keeping the id as Discord does."""
        fake = self._fake
        kind = int(definition.get("type", 1))
        for command in fake.commands.values():
            if command.guild_id == guild_id and command.name == definition["name"] and command.type == kind:
                if command.definition != definition:
                    command.definition = definition
                    command.version = fake.ids.next()
                return command, False
        command = RegisteredCommand(
            id=fake.ids.next(),
            application_id=fake.application_id,
            guild_id=guild_id,
            definition=definition,
            version=fake.ids.next(),
        )
        fake.commands[command.id] = command
        return command, True

    def _scoped_commands(self, guild_id: int | None) -> list[RegisteredCommand]:
        return [c for c in self._fake.commands.values() if c.guild_id == guild_id]

    async def list_commands(self, request: ApiRequest) -> ApiReply:
        guild_id = self._command_scope(request)
        return ApiReply(200, [c.to_payload() for c in self._scoped_commands(guild_id)])

    async def overwrite_commands(self, request: ApiRequest) -> ApiReply:
        guild_id = self._command_scope(request)
        if not isinstance(request.body, list):
            raise invalid_form("_root", "Expected an array of commands.")
        definitions = [self._validate_command(i, d) for i, d in enumerate(request.body)]
        keys = [(d["name"], int(d.get("type", 1))) for d in definitions]
        if len(set(keys)) != len(keys):
            raise invalid_form("_root", "Application command names must be unique")
        kept = [self._store_command(guild_id, d)[0] for d in definitions]
        kept_ids = {c.id for c in kept}
        for command in self._scoped_commands(guild_id):
            if command.id not in kept_ids:
                del self._fake.commands[command.id]
        self._fake.command_overwrites += 1
        return ApiReply(200, [c.to_payload() for c in kept])

    async def upsert_command(self, request: ApiRequest) -> ApiReply:
        guild_id = self._command_scope(request)
        command, created = self._store_command(guild_id, self._validate_command(0, request.body))
        return ApiReply(201 if created else 200, command.to_payload())

    def _command(self, request: ApiRequest) -> RegisteredCommand:
        guild_id = self._command_scope(request)
        command = self._fake.commands.get(request.snowflake("command_id"))
        if command is None or command.guild_id != guild_id:
            raise DiscordAPIError(404, 10063, "Unknown application command")
        return command

    async def get_command(self, request: ApiRequest) -> ApiReply:
        return ApiReply(200, self._command(request).to_payload())

    async def edit_command(self, request: ApiRequest) -> ApiReply:
        command = self._command(request)
        command.definition = self._validate_command(0, {**command.definition, **request.json})
        command.version = self._fake.ids.next()
        return ApiReply(200, command.to_payload())

    async def delete_command(self, request: ApiRequest) -> ApiReply:
        command = self._command(request)
        del self._fake.commands[command.id]
        return ApiReply(204)

    async def command_permissions(self, request: ApiRequest) -> ApiReply:
        self._command_scope(request)
        return ApiReply(200, [])


def _query_int(
    request: ApiRequest, name: str, *, default: int, low: int, high: int | None = None, snowflake: bool = False
) -> int:
    """A query parameter as an int, refused with Discord's ``Invalid Form Body`` when out of range."""
    raw = request.query.get(name)
    if raw is None:
        return default
    kind = "snowflake" if snowflake else "int"
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None:
        error = {"code": "NUMBER_TYPE_COERCE", "message": f'Value "{raw}" is not {kind}.'}
    elif value < low:
        error = {"code": "NUMBER_TYPE_MIN", "message": f"Int value should be greater than or equal to {low}."}
    elif high is not None and value > high:
        error = {"code": "NUMBER_TYPE_MAX", "message": f"Int value should be less than or equal to {high}."}
    else:
        return value
    raise DiscordAPIError(400, 50035, "Invalid Form Body", {name: {"_errors": [error]}})
