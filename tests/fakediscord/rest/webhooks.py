"""Routes an interaction's token opens: the callback, follow-ups, and the edits of its messages.

They carry no ``Authorization`` header: the token in the path is the credential, good for
``FakeDiscord.token_lifetime`` on the fake clock (the callback only within ``ack_deadline``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.fakediscord.models import (
    CallbackType,
    InteractionCallback,
    InteractionEvent,
    InteractionType,
    MessageFlag,
    StoredMessage,
    UploadedFile,
)
from tests.fakediscord.rest.request import ApiReply, ApiRequest
from tests.fakediscord.validation import DiscordAPIError, invalid_form

if TYPE_CHECKING:
    from tests.fakediscord.interactions import InteractionRecord
    from tests.fakediscord.server import FakeDiscord


class WebhookRoutes:
    """The interaction callback and the interaction webhook's message routes."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake

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
