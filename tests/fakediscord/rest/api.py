"""The REST API under ``/api/v10``: the routes discord.py 2.7 calls for a slash-command bot.

Routes and bodies follow discord.py's own callers: ``HTTPClient`` in ``discord/http.py`` (bot
token routes) and ``AsyncWebhookAdapter`` in ``discord/webhook/async_.py`` (interaction callback
and follow-ups, which carry no ``Authorization`` header), plus the OAuth2 routes a web app's
"Sign in with Discord" calls (:mod:`tests.fakediscord.oauth`). Every request is recorded as a
:class:`RestCall`; an unknown route answers 404 like Discord does, so a test can see what the
client tried. JSON replies carry ``Content-Type: application/json`` exactly, because
``discord.http.json_or_text`` compares that header with ``==`` and would otherwise hand the bot
a string instead of a dict.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from tests.fakediscord.models import RestCall, UploadedFile
from tests.fakediscord.rest.application import ApplicationRoutes
from tests.fakediscord.rest.channels import ChannelRoutes
from tests.fakediscord.rest.request import ApiRequest, Handler
from tests.fakediscord.rest.webhooks import WebhookRoutes
from tests.fakediscord.validation import DiscordAPIError

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord

API_PREFIX = "/api/v10"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


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


def recordable(body: Any) -> Any:
    """``body`` as :attr:`RestCall.body` keeps it: an OAuth2 form's ``client_secret`` reads ``***``."""
    if isinstance(body, dict) and "client_secret" in body:
        return {**body, "client_secret": "***"}
    return body


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON reply whose Content-Type is exactly ``application/json`` (no charset parameter)."""
    if body is None:
        return web.Response(status=204 if status == 200 else status, headers=dict(headers or {}))
    data = json.dumps(body).encode()
    return web.Response(status=status, body=data, headers={**(headers or {}), "Content-Type": "application/json"})


class RestApi:
    """Parses, fault-injects, routes and records every request; the handlers live by resource."""

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
        if content_type == FORM_CONTENT_TYPE:  # the OAuth2 token endpoint's body
            return dict(urllib.parse.parse_qsl(raw_text, keep_blank_values=True)), ()
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
            elif route.needs_bot_token and not fake.accepts_authorization(request.headers.get("Authorization")):
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
                    content_type=request.content_type,
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
                body=recordable(body),
                files=tuple(f.filename for f in files),
                status=status,
                route=route.template if route else None,
                at=fake.clock.monotonic(),
            )
        )
        fake.feed.notify()
        return json_response(status, payload, headers)

    def _register_routes(self) -> None:
        """The route table; each handler lives with its resource (application, webhooks, channels)."""
        fake = self._fake
        app, hooks, chans = ApplicationRoutes(fake), WebhookRoutes(fake), ChannelRoutes(fake)
        r = self.route
        r("GET", "/gateway", app.get_gateway, bot_token=False)
        r("GET", "/gateway/bot", app.get_gateway_bot)
        # A bot token or an OAuth2 bearer token: the handlers check which (bot_token=False).
        r("GET", "/users/@me", app.get_current_user, bot_token=False)
        r("GET", "/users/@me/guilds", app.get_current_user_guilds, bot_token=False)
        r("POST", "/oauth2/token", fake.oauth.token, bot_token=False)
        r("POST", "/oauth2/token/revoke", fake.oauth.revoke_token, bot_token=False)
        r("POST", "/users/@me/channels", app.create_dm)
        r("GET", "/users/{user_id}", app.get_user)
        r("GET", "/oauth2/applications/@me", app.get_application)
        r("GET", "/applications/@me", app.get_application)
        r("GET", "/applications/{application_id}/commands", app.list_commands)
        r("PUT", "/applications/{application_id}/commands", app.overwrite_commands)
        r("POST", "/applications/{application_id}/commands", app.upsert_command)
        r("GET", "/applications/{application_id}/commands/{command_id}", app.get_command)
        r("PATCH", "/applications/{application_id}/commands/{command_id}", app.edit_command)
        r("DELETE", "/applications/{application_id}/commands/{command_id}", app.delete_command)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands/permissions", app.command_permissions)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands", app.list_commands)
        r("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", app.overwrite_commands)
        r("POST", "/applications/{application_id}/guilds/{guild_id}/commands", app.upsert_command)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", app.get_command)
        r("PATCH", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", app.edit_command)
        r("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", app.delete_command)
        r("POST", "/interactions/{interaction_id}/{token}/callback", hooks.interaction_callback, bot_token=False)
        r("POST", "/webhooks/{webhook_id}/{token}", hooks.create_followup, bot_token=False)
        r("GET", "/webhooks/{webhook_id}/{token}/messages/{message_id}", hooks.get_webhook_message, bot_token=False)
        r("PATCH", "/webhooks/{webhook_id}/{token}/messages/{message_id}", hooks.edit_webhook_message, bot_token=False)
        r(
            "DELETE",
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            hooks.delete_webhook_message,
            bot_token=False,
        )
        r("GET", "/channels/{channel_id}", chans.get_channel)
        r("GET", "/channels/{channel_id}/messages", chans.list_messages)
        r("POST", "/channels/{channel_id}/messages", chans.create_message)
        r("GET", "/channels/{channel_id}/messages/{message_id}", chans.get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", chans.edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", chans.delete_message)
        r("POST", "/channels/{channel_id}/typing", chans.trigger_typing)
        r("GET", "/guilds/{guild_id}", chans.get_guild)
        r("GET", "/guilds/{guild_id}/channels", chans.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", chans.get_guild_roles)
        r("GET", "/guilds/{guild_id}/members/{user_id}", chans.get_member)
