"""Reading a submitted window (modal) from the interaction's data alone.

A window the bot answers from its custom id, rather than from the ``Modal`` object that
opened it, is answered after a restart or after discord.py forgot the object (its
15 minutes): the Remix window, and the default negative prompt of /settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def submitted_value(node: Any, custom_id: str) -> str | None:
    """The value of the text input ``custom_id`` anywhere in a submission (rows, or Discord's newer labels)."""
    if isinstance(node, Mapping):
        if node.get("custom_id") == custom_id and "value" in node:
            return str(node["value"])
        children = [node.get("components"), node.get("component")]
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = submitted_value(child, custom_id)
        if found is not None:
            return found
    return None
