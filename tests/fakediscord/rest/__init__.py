"""The REST API under ``/api/v10``: the routes discord.py 2.7 calls for a slash-command bot.

:mod:`.api` parses, fault-injects, routes and records every request and holds the route table;
the handlers live by resource: :mod:`.application` (users, the application and its commands),
:mod:`.webhooks` (interaction callbacks and follow-ups) and :mod:`.channels` (channels, messages,
guilds). :mod:`.request` is the parsed request and the reply they share.
"""

from __future__ import annotations

from tests.fakediscord.rest.api import API_PREFIX, Fault, RestApi, json_response
from tests.fakediscord.rest.request import ApiReply, ApiRequest, Handler

__all__ = ["API_PREFIX", "ApiReply", "ApiRequest", "Fault", "Handler", "RestApi", "json_response"]
