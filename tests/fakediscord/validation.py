"""Discord's limits on message bodies, so a layout Discord would refuse fails here too.

A grid with nine buttons in one row, a 2,001-character caption or a duplicated custom id is a
400 from Discord in production; reproducing the documented limits in the fake turns those bugs
into test failures instead of surprises. Errors use Discord's JSON error shape (``code`` 50035,
``errors`` keyed by field path) so discord.py raises the same ``HTTPException``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fakediscord.models import MessageFlag, walk_components


class DiscordAPIError(Exception):
    """An error response in Discord's format; the REST layer turns it into the HTTP reply."""

    def __init__(self, status: int, code: int, message: str, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = dict(errors) if errors else None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            payload["errors"] = self.errors
        return payload


def invalid_form(field: str, message: str) -> DiscordAPIError:
    return DiscordAPIError(
        400, 50035, "Invalid Form Body", {field: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}}
    )


def _validate_embeds(embeds: list[Mapping[str, Any]]) -> None:
    if len(embeds) > 10:
        raise invalid_form("embeds", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        limits = {"title": 256, "description": 4096}
        for key, limit in limits.items():
            text = embed.get(key) or ""
            if len(text) > limit:
                raise invalid_form(f"embeds.{i}.{key}", f"Must be {limit} or fewer in length.")
            total += len(text)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise invalid_form(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
        for j, item in enumerate(fields):
            if len(item.get("name") or "") > 256 or len(item.get("value") or "") > 1024:
                raise invalid_form(f"embeds.{i}.fields.{j}", "Field name or value too long.")
            total += len(item.get("name") or "") + len(item.get("value") or "")
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        if len(footer) > 2048:
            raise invalid_form(f"embeds.{i}.footer.text", "Must be 2048 or fewer in length.")
        if len(author) > 256:
            raise invalid_form(f"embeds.{i}.author.name", "Must be 256 or fewer in length.")
        total += len(footer) + len(author)
    if total > 6000:
        raise invalid_form("embeds", "Embed size exceeds maximum size of 6000")


def _validate_button(path: str, button: Mapping[str, Any]) -> None:
    style = button.get("style")
    if style not in (1, 2, 3, 4, 5, 6):
        raise invalid_form(f"{path}.style", "Value must be one of {1, 2, 3, 4, 5, 6}.")
    if style == 5:
        if not button.get("url") or button.get("custom_id"):
            raise invalid_form(path, "A link button needs a url and no custom_id.")
    elif style != 6 and not button.get("custom_id"):
        raise invalid_form(f"{path}.custom_id", "This field is required")
    if not button.get("label") and not button.get("emoji") and style != 6:
        raise invalid_form(path, "A button needs a label or an emoji.")
    if len(button.get("label") or "") > 80:
        raise invalid_form(f"{path}.label", "Must be 80 or fewer in length.")


def _validate_classic_components(components: list[Mapping[str, Any]]) -> None:
    """Action rows of buttons or one select each, five rows at most."""
    if len(components) > 5:
        raise invalid_form("components", "Must be 5 or fewer in length.")
    for i, row in enumerate(components):
        if row.get("type") != 1:
            raise invalid_form(f"components.{i}.type", "Top-level components must be action rows.")
        children = list(row.get("components") or [])
        if not children or len(children) > 5:
            raise invalid_form(f"components.{i}.components", "Must be between 1 and 5 in length.")
        kinds = {c.get("type") for c in children}
        if kinds - {2} and len(children) > 1:
            raise invalid_form(f"components.{i}.components", "A select menu must be alone in its row.")
        for j, child in enumerate(children):
            if child.get("type") == 2:
                _validate_button(f"components.{i}.components.{j}", child)


def _validate_custom_ids(components: list[Mapping[str, Any]]) -> None:
    seen: set[str] = set()
    for component in walk_components([dict(c) for c in components]):
        custom_id = component.get("custom_id")
        if custom_id is None:
            continue
        if not 1 <= len(custom_id) <= 100:
            raise invalid_form("components", "custom_id must be between 1 and 100 in length.")
        if custom_id in seen:
            raise invalid_form("components", "Component custom id cannot be duplicated")
        seen.add(custom_id)


def validate_message(
    *,
    content: str,
    embeds: list[Mapping[str, Any]],
    components: list[Mapping[str, Any]],
    attachment_count: int,
    flags: int,
    has_poll: bool = False,
    has_stickers: bool = False,
    allow_empty: bool = False,
) -> None:
    """Raise the error Discord would return for this message body, or return None when it is valid."""
    v2 = bool(flags & MessageFlag.IS_COMPONENTS_V2)
    if v2:
        if content or embeds:
            raise invalid_form("content", "content and embeds cannot be used with IS_COMPONENTS_V2.")
    else:
        if len(content) > 2000:
            raise invalid_form("content", "Must be 2000 or fewer in length.")
        _validate_embeds(embeds)
        _validate_classic_components(components)
    _validate_custom_ids(components)
    if attachment_count > 10:
        raise invalid_form("attachments", "Must be 10 or fewer in length.")
    empty = not (content or embeds or components or attachment_count or has_poll or has_stickers)
    if empty and not allow_empty:
        raise DiscordAPIError(400, 50006, "Cannot send an empty message")
