"""The REST API under ``/api/v10``: the routes discord.py 2.7 calls for a slash-command bot.

Routes and bodies follow discord.py's own callers: ``HTTPClient`` in ``discord/http.py`` (bot
token routes) and ``AsyncWebhookAdapter`` in ``discord/webhook/async_.py`` (interaction callback
and follow-ups, which carry no ``Authorization`` header). Every request is recorded as a
:class:`RestCall`; an unknown route answers 404 like Discord does, so a test can see what the
client tried. JSON replies carry ``Content-Type: application/json`` exactly, because
``discord.http.json_or_text`` compares that header with ``==`` and would otherwise hand the bot
a string instead of a dict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from tests.fakediscord.models import (
    CallbackType,
    FakeChannel,
    InteractionCallback,
    InteractionEvent,
    InteractionType,
    MessageFlag,
    MessageType,
    Permission,
    RegisteredCommand,
    RestCall,
    StoredMessage,
    UploadedFile,
)
from tests.fakediscord.validation import DiscordAPIError, invalid_form

if TYPE_CHECKING:
    from tests.fakediscord.interactions import InteractionRecord
    from tests.fakediscord.server import FakeDiscord

API_PREFIX = "/api/v10"


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A parsed request: path parameters, query, JSON body (or ``payload_json``) and uploaded files."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any
    files: tuple[UploadedFile, ...]
    authorization: str | None

    def snowflake(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise DiscordAPIError(400, 50035, "Invalid Form Body", {name: "Value is not snowflake."}) from None

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


@dataclass(frozen=True, slots=True)
class ApiReply:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[ApiRequest], Awaitable[ApiReply]]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    needs_bot_token: bool


@dataclass(slots=True)
class Fault:
    """A canned error for matching requests, to test how the bot handles Discord failing."""

    method: str | None
    path: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    remaining: int
    hits: int = 0


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON reply whose Content-Type is exactly ``application/json`` (no charset parameter)."""
    if body is None:
        return web.Response(status=204 if status == 200 else status, headers=dict(headers or {}))
    data = json.dumps(body).encode()
    return web.Response(status=status, body=data, headers={**(headers or {}), "Content-Type": "application/json"})


class RestApi:
    """The route table and handlers; all state lives on the :class:`FakeDiscord` it serves."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._routes: list[_Route] = []
        self.faults: list[Fault] = []
        self._register_routes()

    # -- plumbing ------------------------------------------------------------------------------

    def route(self, method: str, template: str, handler: Handler, *, bot_token: bool = True) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self._routes.append(_Route(method, template, re.compile(f"^{regex}$"), handler, bot_token))

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str], bool]:
        path_known = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, found.groupdict(), True
        return None, {}, path_known

    async def _parse_body(self, request: web.Request) -> tuple[Any, tuple[UploadedFile, ...]]:
        content_type = request.content_type
        if content_type.startswith("multipart/"):
            body: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                raw = await part.read(decode=False)
                if name == "payload_json":
                    body = json.loads(raw.decode())
                elif name.startswith("files["):
                    files.append(
                        UploadedFile(
                            field_name=name,
                            filename=part.filename or "unknown",
                            content_type=part.headers.get("Content-Type", "application/octet-stream"),
                            data=bytes(raw),
                        )
                    )
            return body, tuple(files)
        raw_text = await request.text()
        if not raw_text:
            return None, ()
        try:
            return json.loads(raw_text), ()
        except json.JSONDecodeError:
            raise DiscordAPIError(400, 50109, "The request body contains invalid JSON.") from None

    def _fault_for(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.method in (None, method) and fault.path.search(path):
                fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Entry point for every ``/api/...`` request: parse, fault-inject, route, record."""
        fake = self._fake
        full_path = request.path
        path = full_path.removeprefix(API_PREFIX) if full_path.startswith(API_PREFIX + "/") else full_path
        method = request.method
        route: _Route | None = None
        body: Any = None
        files: tuple[UploadedFile, ...] = ()
        headers: Mapping[str, str] = {}
        try:
            body, files = await self._parse_body(request)
            in_api = full_path.startswith(API_PREFIX + "/")
            route, params, path_known = self._match(method, path) if in_api else (None, {}, False)
            fault = self._fault_for(method, path)
            if fault is not None:
                status, payload, headers = fault.status, fault.body, fault.headers
            elif route is None:
                status = 405 if path_known else 404
                reason = "Method Not Allowed" if path_known else "Not Found"
                payload = {"message": f"{status}: {reason}", "code": 0}
            elif route.needs_bot_token and not fake.accepts_token(
                (request.headers.get("Authorization") or "").removeprefix("Bot ")
            ):
                status, payload = 401, {"message": "401: Unauthorized", "code": 0}
            else:
                api_request = ApiRequest(
                    method=method,
                    path=path,
                    params=params,
                    query=dict(request.query),
                    body=body,
                    files=files,
                    authorization=request.headers.get("Authorization"),
                )
                reply = await route.handler(api_request)
                status, payload, headers = reply.status, reply.body, reply.headers
        except DiscordAPIError as error:
            status, payload = error.status, error.to_payload()
        fake.calls.append(
            RestCall(
                method=method,
                path=path,
                query=dict(request.query),
                body=body,
                files=tuple(f.filename for f in files),
                status=status,
                route=route.template if route else None,
                at=fake.clock.monotonic(),
            )
        )
        fake.feed.notify()
        return json_response(status, payload, headers)

    def _register_routes(self) -> None:
        r = self.route
        r("GET", "/gateway", self.get_gateway, bot_token=False)
        r("GET", "/gateway/bot", self.get_gateway_bot)
        r("GET", "/users/@me", self.get_current_user)
        r("POST", "/users/@me/channels", self.create_dm)
        r("GET", "/users/{user_id}", self.get_user)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        r("GET", "/applications/{application_id}/commands", self.list_commands)
        r("PUT", "/applications/{application_id}/commands", self.overwrite_commands)
        r("POST", "/applications/{application_id}/commands", self.upsert_command)
        r("GET", "/applications/{application_id}/commands/{command_id}", self.get_command)
        r("PATCH", "/applications/{application_id}/commands/{command_id}", self.edit_command)
        r("DELETE", "/applications/{application_id}/commands/{command_id}", self.delete_command)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands/permissions", self.command_permissions)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.list_commands)
        r("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.overwrite_commands)
        r("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self.upsert_command)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.get_command)
        r("PATCH", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.edit_command)
        r("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.delete_command)
        r("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback, bot_token=False)
        r("POST", "/webhooks/{webhook_id}/{token}", self.create_followup, bot_token=False)
        r("GET", "/webhooks/{webhook_id}/{token}/messages/{message_id}", self.get_webhook_message, bot_token=False)
        r("PATCH", "/webhooks/{webhook_id}/{token}/messages/{message_id}", self.edit_webhook_message, bot_token=False)
        r(
            "DELETE",
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            self.delete_webhook_message,
            bot_token=False,
        )
        r("GET", "/channels/{channel_id}", self.get_channel)
        r("GET", "/channels/{channel_id}/messages", self.list_messages)
        r("POST", "/channels/{channel_id}/messages", self.create_message)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        r("POST", "/channels/{channel_id}/typing", self.trigger_typing)
        r("GET", "/guilds/{guild_id}", self.get_guild)
        r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self.get_guild_roles)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)

    # -- users, gateway, application ------------------------------------------------------------

    async def get_gateway(self, _: ApiRequest) -> ApiReply:
        return ApiReply(200, {"url": self._fake.gateway_url})

    async def get_gateway_bot(self, _: ApiRequest) -> ApiReply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return ApiReply(200, {"url": self._fake.gateway_url, "shards": 1, "session_start_limit": limit})

    async def get_current_user(self, _: ApiRequest) -> ApiReply:
        user = self._fake.bot_user.to_payload()
        return ApiReply(200, {**user, "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})

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
                "redirect_uris": [],
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

    # -- interactions ----------------------------------------------------------------------------

    _ALLOWED_CALLBACKS: Mapping[InteractionType, frozenset[CallbackType]] = {
        InteractionType.APPLICATION_COMMAND: frozenset(
            {
                CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.MODAL,
                CallbackType.PREMIUM_REQUIRED,
                CallbackType.LAUNCH_ACTIVITY,
            }
        ),
        InteractionType.MESSAGE_COMPONENT: frozenset(
            {
                CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.DEFERRED_UPDATE_MESSAGE,
                CallbackType.UPDATE_MESSAGE,
                CallbackType.MODAL,
                CallbackType.PREMIUM_REQUIRED,
            }
        ),
        InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE: frozenset(
            {CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT}
        ),
        InteractionType.MODAL_SUBMIT: frozenset(
            {
                CallbackType.CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                CallbackType.DEFERRED_UPDATE_MESSAGE,
                CallbackType.UPDATE_MESSAGE,
            }
        ),
    }

    def _record_event(self, ix: InteractionRecord, kind: str, status: int, message_id: int | None) -> None:
        elapsed = self._fake.loop_time() - ix.dispatched_at
        ix.events.append(InteractionEvent(kind=kind, elapsed=elapsed, status=status, message_id=message_id))

    async def interaction_callback(self, request: ApiRequest) -> ApiReply:
        """``POST /interactions/{id}/{token}/callback?with_response=1`` (``create_interaction_response``)."""
        fake = self._fake
        ix = fake.interactions.get(request.snowflake("interaction_id"))
        if ix is None or ix.token != request.params["token"]:
            raise DiscordAPIError(404, 10062, "Unknown interaction")
        try:
            if ix.callbacks:
                raise DiscordAPIError(400, 40060, "Interaction has already been acknowledged.")
            if fake.ack_deadline is not None and fake.clock.monotonic() - ix.issued_at > fake.ack_deadline:
                # Discord forgets an interaction that was not acknowledged in time.
                raise DiscordAPIError(404, 10062, "Unknown interaction")
            body = request.json
            try:
                kind = CallbackType(int(body.get("type", 0)))
            except ValueError:
                raise invalid_form("type", "Value must be a valid interaction callback type.") from None
            if kind not in self._ALLOWED_CALLBACKS.get(ix.type, frozenset()):
                raise invalid_form("type", f"Callback {kind.name} is not valid for a {ix.type.name} interaction.")
            data = body.get("data") or {}
            message = self._apply_callback(ix, kind, data, request.files)
        except DiscordAPIError as error:
            self._record_event(ix, "callback", error.status, None)
            raise
        elapsed = fake.loop_time() - ix.dispatched_at
        message_id = message.id if message is not None else None
        ix.callbacks.append(
            InteractionCallback(type=kind, data=data, files=request.files, elapsed=elapsed, message_id=message_id)
        )
        self._record_event(ix, "callback", 200, message_id)
        return ApiReply(200, self._callback_body(ix, kind, message))

    def _apply_callback(
        self, ix: InteractionRecord, kind: CallbackType, data: dict[str, Any], files: tuple[UploadedFile, ...]
    ) -> StoredMessage | None:
        fake = self._fake
        limit = fake.attachment_limit_for(ix.channel)
        if kind is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            message = fake.create_message(
                ix.channel, fake.bot_user, data, files, size_limit=limit, interaction=ix, allow_ephemeral=True
            )
            ix.original_message_id = message.id
            return message
        if kind is CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            flags = (int(data.get("flags") or 0) & int(MessageFlag.EPHEMERAL)) | int(MessageFlag.LOADING)
            message = fake.create_message(
                ix.channel,
                fake.bot_user,
                {"content": "", "flags": flags},
                (),
                size_limit=limit,
                interaction=ix,
                allow_ephemeral=True,
                allow_empty=True,
            )
            ix.original_message_id = message.id
            return message
        if kind in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            source = fake.messages.get(ix.source_message_id or 0)
            if source is None or source.deleted:
                raise DiscordAPIError(400, 50035, "Invalid Form Body", {"type": "No message to update."})
            if kind is CallbackType.UPDATE_MESSAGE:
                fake.edit_message(source, data, files, via="callback", size_limit=limit)
            ix.original_message_id = source.id
            return source if kind is CallbackType.UPDATE_MESSAGE else None
        if kind is CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
            if len(data.get("choices") or []) > 25:
                raise invalid_form("data.choices", "Must be 25 or fewer in length.")
            return None
        if kind is CallbackType.MODAL:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise invalid_form("data", "A modal needs custom_id, title and components.")
            if len(data["title"]) > 45:
                raise invalid_form("data.title", "Must be 45 or fewer in length.")
            return None
        return None

    def _callback_body(
        self, ix: InteractionRecord, kind: CallbackType, message: StoredMessage | None
    ) -> dict[str, Any]:
        """The ``InteractionCallbackResponse`` that ``with_response=1`` asks for."""
        interaction: dict[str, Any] = {
            "id": str(ix.id),
            "type": int(ix.type),
            "activity_instance_id": None,
            "response_message_id": str(message.id) if message is not None else None,
            "response_message_loading": kind is CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            "response_message_ephemeral": bool(message is not None and message.ephemeral),
        }
        body: dict[str, Any] = {"interaction": interaction}
        if message is not None:
            body["resource"] = {"type": int(kind), "message": self._fake.message_payload(message)}
        return body

    def _interaction_for_webhook(self, request: ApiRequest) -> InteractionRecord:
        fake = self._fake
        ix = fake.interactions_by_token.get(request.params["token"])
        if ix is None or request.snowflake("webhook_id") != ix.application_id:
            raise DiscordAPIError(404, 10015, "Unknown Webhook")
        if fake.clock.monotonic() - ix.issued_at > fake.token_lifetime:
            raise DiscordAPIError(401, 50027, "Invalid Webhook Token")
        return ix

    def _webhook_message(self, ix: InteractionRecord, request: ApiRequest) -> StoredMessage:
        raw = request.params["message_id"]
        if raw == "@original":
            message_id = ix.original_message_id
        else:
            message_id = request.snowflake("message_id")
            if message_id not in {ix.original_message_id, *ix.followup_ids}:
                message_id = None
        message = self._fake.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise DiscordAPIError(404, 10008, "Unknown Message")
        return message

    async def create_followup(self, request: ApiRequest) -> ApiReply:
        """``interaction.followup.send``. The first one after a deferral fills the "thinking" message."""
        fake = self._fake
        ix = self._interaction_for_webhook(request)
        try:
            if not ix.acknowledged:
                raise DiscordAPIError(404, 10015, "Unknown Webhook")
            limit = fake.attachment_limit_for(ix.channel)
            original = ix.original_message
            if original is not None and original.loading and not original.deleted:
                # The deferral decided visibility; EPHEMERAL is not editable, so the original's stays.
                fake.edit_message(original, request.json, request.files, via="followup", size_limit=limit)
                message = original
            else:
                message = fake.create_message(
                    ix.channel,
                    fake.bot_user,
                    request.json,
                    request.files,
                    size_limit=limit,
                    interaction=ix,
                    allow_ephemeral=True,
                    followup=True,
                )
        except DiscordAPIError as error:
            self._record_event(ix, "followup", error.status, None)
            raise
        ix.followup_ids.append(message.id)
        self._record_event(ix, "followup", 200, message.id)
        if request.query.get("wait") in ("0", "false", "False"):
            return ApiReply(204)
        return ApiReply(200, fake.message_payload(message))

    async def get_webhook_message(self, request: ApiRequest) -> ApiReply:
        ix = self._interaction_for_webhook(request)
        message = self._webhook_message(ix, request)
        self._record_event(ix, "get_message", 200, message.id)
        return ApiReply(200, self._fake.message_payload(message))

    async def edit_webhook_message(self, request: ApiRequest) -> ApiReply:
        fake = self._fake
        ix = self._interaction_for_webhook(request)
        try:
            message = self._webhook_message(ix, request)
            fake.edit_message(
                message, request.json, request.files, via="webhook", size_limit=fake.attachment_limit_for(ix.channel)
            )
        except DiscordAPIError as error:
            self._record_event(ix, "edit_message", error.status, None)
            raise
        self._record_event(ix, "edit_message", 200, message.id)
        return ApiReply(200, fake.message_payload(message))

    async def delete_webhook_message(self, request: ApiRequest) -> ApiReply:
        ix = self._interaction_for_webhook(request)
        message = self._webhook_message(ix, request)
        self._fake.delete_message(message)
        self._record_event(ix, "delete_message", 204, message.id)
        return ApiReply(204)

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


def message_type_for(ix: InteractionRecord | None, *, followup: bool) -> MessageType:
    """Slash command responses are CHAT_INPUT_COMMAND messages; everything else is DEFAULT here."""
    if ix is not None and ix.type is InteractionType.APPLICATION_COMMAND and not followup:
        return MessageType.CHAT_INPUT_COMMAND
    return MessageType.DEFAULT
