"""A parsed REST request and the reply a handler gives, shared by every route module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakediscord.models import UploadedFile
from tests.fakediscord.validation import DiscordAPIError


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A parsed request: path parameters, query, JSON body (``payload_json``, a form's fields) and uploaded files."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any
    files: tuple[UploadedFile, ...]
    authorization: str | None
    content_type: str = ""
    """The body's media type, without parameters (``application/x-www-form-urlencoded``)."""

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
