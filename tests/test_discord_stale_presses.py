"""Every press of the bot's components gets an answer, also from a client that shows a stale message.

discord.py routes a press only when its custom id is among the components of the message
Discord sends with it; a Cancel pressed as the grid replaced the status message, or a button
an edit removed, would otherwise go unanswered ("This interaction failed"). The fake Discord's
``press_stale`` sends what such a client sends: the custom id it shows, on the message as it is now.
"""

from __future__ import annotations

import asyncio

from bot.settings import Settings
from models.engine import DiffusionEngine
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, running_bot
from tests.fakediscord import CallbackType, FakeDiscord, FakeMember, InteractionRecord, StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

# The shared fixtures, re-exported so pytest finds them here (``bot`` needs ``settings`` too).
settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

CANCELLED = "Cancelled; its credits were refunded."
FINISHED = "This job has already finished."
#: When each member presses Cancel after being accepted, first in the queue first; ``None``: once the grid is posted.
PRESS_AFTER_S = (None, 4.0, 2.5, 1.5, 0.8, 0.3, 0.0)


def without(message: StoredMessage, custom_id: str) -> list[dict]:
    """The message's rows less the component ``custom_id``, as an edit that drops it would leave them."""
    rows = [
        {**row, "components": [c for c in row["components"] if c.get("custom_id") != custom_id]}
        for row in message.components
    ]
    return [row for row in rows if row["components"]]


def drop_component(fake: FakeDiscord, message: StoredMessage, custom_id: str) -> None:
    """Edit ``message`` so that it no longer carries ``custom_id`` (a client that did not see the edit still shows it)."""
    fake.edit_message(message, {"components": without(message, custom_id)}, via="channel", size_limit=25 * 1024 * 1024)
    assert message.component(custom_id) is None


def answered_once(press: InteractionRecord) -> None:
    """One callback and nothing after it: a press discord.py routed is not answered a second time."""
    assert len(press.callbacks) == 1 and not press.followup_ids, press.events


async def test_every_cancel_press_is_answered_before_and_after_the_grid(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    """Members press Cancel at staggered times after being accepted, the first in the queue only once
    its grid replaced the status message: each gets one ephemeral answer within 3 s that says what
    happened to the job."""

    async def queue_and_press(member: FakeMember, accepted: asyncio.Event, after_s: float | None) -> tuple:
        ix = await imagine(fake_discord, world, user=member)
        status = await ix.wait_for_original(lambda m: bool(m.buttons), timeout=30)
        cancel = status.button(label="Cancel")["custom_id"]
        accepted.set()
        if after_s is None:
            await ix.wait_for_original(has_grid, timeout=180)
            assert status.component(cancel) is None  # the grid's buttons replaced Cancel
        else:
            await asyncio.sleep(after_s)
        press = await fake_discord.press_stale(status, cancel, user=member)
        answer = await press.wait_for_response(timeout=3)
        outcome = await ix.wait_for_original(
            lambda m: has_grid(m) or "Cancelled; credits refunded." in m.content, timeout=180
        )
        await asyncio.sleep(0.5)  # time for a second answer, were there one
        return press, answer, outcome

    presses = []
    for place, after_s in enumerate(PRESS_AFTER_S):  # queued one after another, so the queue's order is known
        accepted = asyncio.Event()
        member = fake_discord.add_member(world.guild, f"member{place}")
        presses.append(asyncio.create_task(queue_and_press(member, accepted, after_s)))
        await asyncio.wait_for(accepted.wait(), timeout=60)
    results = await asyncio.gather(*presses)

    for press, answer, outcome in results:
        assert answer.ephemeral and answer.elapsed < 3
        assert answer.content == (FINISHED if has_grid(outcome) else CANCELLED)
        answered_once(press)
    first, *_, last = (answer.content for _, answer, _ in results)
    assert first == FINISHED  # pressed as the grid replaced it: answered, not dropped
    assert last == CANCELLED  # pressed at once, three batches behind: cancelled


async def test_a_press_on_a_button_an_edit_removed_still_runs_it(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    """A U1 the grid no longer carries still makes the upscale; a region menu an edit emptied still opens Remix."""
    grid = await finished_grid(await imagine(fake_discord, world, seed=3))
    u1 = grid.button(label="U1")["custom_id"]
    drop_component(fake_discord, grid, u1)

    press = await fake_discord.press_stale(grid, u1, user=world.member)
    answer = await press.wait_for_response(timeout=3)
    assert not answer.ephemeral and answer.elapsed < 3
    upscaled = await press.wait_for_message(has_grid, timeout=180)
    assert "image 1 upscaled" in upscaled.content
    assert upscaled.attachments[0].open_image().size == (128, 128)
    answered_once(press)

    region = await fake_discord.press_button(upscaled, user=world.member, label="Vary (Region)")
    menu = await region.wait_for_response(timeout=5)
    assert menu.message_id is not None
    select = menu.data["components"][0]["components"][0]["custom_id"]
    drop_component(fake_discord, fake_discord.messages[menu.message_id], select)
    chosen = await fake_discord.press_stale(menu.message_id, select, user=world.member, values=["left-half"])
    window = await chosen.wait_for_response(timeout=3)
    assert window.type is CallbackType.MODAL and window.data["title"] == "Remix"


async def test_stale_presses_on_a_question_and_the_settings_panel_are_answered(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    asked = await imagine(fake_discord, world, prompt="a fox --repeat 2", count=1)
    question = await asked.wait_for_response(timeout=10)
    assert question.message_id is not None
    yes = question.data["components"][0]["components"][0]["custom_id"]
    no = await fake_discord.press_button(question.message_id, user=world.member, label="No")
    await no.wait_for_response(timeout=10)
    asked_message = fake_discord.messages[question.message_id]
    assert asked_message.content == "Nothing was queued or charged." and not asked_message.buttons

    # A second click from a client that still shows Yes: told, and the answer given stands.
    again = await fake_discord.press_stale(asked_message, yes, user=world.member)
    answer = await again.wait_for_response(timeout=3)
    assert answer.ephemeral and answer.content == "This question was already answered."
    assert asked_message.content == "Nothing was queued or charged."
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0

    opened = await fake_discord.run_slash("settings", user=world.member, channel=world.text_channel)
    panel = await opened.wait_for_response(timeout=5)
    assert panel.message_id is not None
    panel_message = fake_discord.messages[panel.message_id]
    drop_component(fake_discord, panel_message, "lcset:steps")
    chosen = await fake_discord.press_stale(panel_message, "lcset:steps", user=world.member, values=["20"])
    redrawn = await chosen.wait_for_response(timeout=3)
    assert redrawn.type is CallbackType.UPDATE_MESSAGE and "Steps: 20" in panel_message.content
    assert (await core.service.preferences(world.member.user.id)).steps == 20


async def test_the_negative_prompt_window_sent_after_a_restart_is_answered(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    """The /settings window is answered from its custom id, like Remix's: one opened before a restart still saves."""
    async with running_bot(fake_discord, settings, tiny_engine):
        opened = await fake_discord.run_slash("settings", user=world.member, channel=world.text_channel)
        panel = await opened.wait_for_response(timeout=5)
        assert panel.message_id is not None
        window = await fake_discord.press_button(panel.message_id, user=world.member, label="Negative prompt…")
        assert (await window.wait_for_response(timeout=5)).type is CallbackType.MODAL
    async with running_bot(fake_discord, settings, tiny_engine) as (_, core):  # the window is still open
        sent = await fake_discord.submit_modal(window, {"negative": "blurry,   text"})
        redrawn = await sent.wait_for_response(timeout=3)
        assert redrawn.type is CallbackType.UPDATE_MESSAGE
        assert "Negative prompt: blurry, text" in fake_discord.messages[panel.message_id].content
        assert (await core.service.preferences(world.member.user.id)).negative == "blurry, text"
        answered_once(sent)
