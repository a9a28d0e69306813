"""The fake Discord holds discord.py to Discord's rules, as the real one does: the harness's own proof, continued.

With the test-only bot of ``tests/echo_bot.py``: unknown routes, the interaction token's 15
minutes and the 3-second window, the bot token's routes with permissions, invalid bodies, rate
limits and injected faults, a gateway RESUME, exact JSON replies, and a wrong token at start-up.
"""

from __future__ import annotations

import aiohttp
import discord
import pytest

from tests import echo_bot
from tests.echo_bot import EchoBot
from tests.fakediscord import FakeDiscord, GuildSetup, Permission, PermissionOverwrite
from tests.fakediscord import fixtures as fakediscord_fixtures
from tests.fakediscord.fixtures import running_client

fake_discord = fakediscord_fixtures.fake_discord  # re-exported so pytest finds the fixture here
bot = echo_bot.bot  # likewise


async def test_unknown_route_is_recorded(fake_discord: FakeDiscord, bot: EchoBot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.fetch_premium_sticker_packs()
    assert [(c.method, c.path) for c in fake_discord.unknown_calls] == [("GET", "/sticker-packs")]


async def test_discord_deadlines_are_enforced(fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot) -> None:
    # A follow-up after the token's 15 minutes is refused (the clock is simulated).
    ix = await fake_discord.run_slash("echo", {"text": "now"}, user=world.member, channel=world.text_channel)
    await ix.wait_for_response()
    fake_discord.clock.advance(15 * 60 + 1)
    with pytest.raises(discord.HTTPException) as late:
        await bot.interactions[-1].followup.send("too late")
    assert (late.value.status, late.value.code) == (401, 50027)

    # An acknowledgement after 3 seconds finds an unknown interaction.
    slow = await fake_discord.run_slash("slow", user=world.member, channel=world.text_channel)
    fake_discord.clock.advance(3.5)
    bot.release_slow.set()
    # The fake records the refusal before the client has read it: wait for both sides.
    await fake_discord.wait_until(lambda: slow.events and bot.slow_error, timeout=3, what="the late callback")
    assert not slow.acknowledged and slow.events[0].status == 404
    assert isinstance(bot.slow_error, discord.NotFound) and bot.slow_error.code == 10062


async def test_bot_token_routes_permissions_and_faults(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    channel = bot.get_channel(world.text_channel.id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send(f"hello {world.member.mention}")
    stored = fake_discord.messages[sent.id]
    assert stored.mentions == [world.member.user] and sent.mentions[0].id == world.member.id
    await sent.edit(content="edited")
    assert stored.content == "edited" and stored.revisions[0].content.startswith("hello")
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "edited"
    await sent.delete()
    assert stored.deleted

    bad_layout = discord.ui.View()
    for i in range(6):
        bad_layout.add_item(discord.ui.Button(label=str(i), custom_id="same", row=i % 5))
    with pytest.raises(discord.HTTPException) as invalid:
        await channel.send("too many", view=bad_layout)
    assert invalid.value.code == 50035

    readonly = fake_discord.add_text_channel(
        world.guild,
        "announcements",
        overwrites=[PermissionOverwrite(world.guild.id, 0, deny=int(Permission.SEND_MESSAGES))],
    )
    await fake_discord.wait_until(lambda: bot.get_channel(readonly.id), timeout=3, what="CHANNEL_CREATE")
    with pytest.raises(discord.Forbidden):
        await bot.get_partial_messageable(readonly.id).send("nope")

    fake_discord.rate_limit(r"^/channels/\d+/messages$", method="POST", retry_after=0.05)
    await channel.send("after a 429")
    assert [c.status for c in fake_discord.calls_to("POST", "/channels/{channel_id}/messages")][-2:] == [429, 200]


async def test_gateway_resume_keeps_the_session(fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot) -> None:
    session = fake_discord.gateway.active()
    assert session is not None
    fake_discord.force_reconnect()
    await fake_discord.wait_until(lambda: 6 in session.received_ops, timeout=5, what="a RESUME")
    ix = await fake_discord.run_slash("echo", {"text": "still here"}, user=world.member, channel=world.text_channel)
    assert (await ix.wait_for_response()).content == "still here"
    assert fake_discord.gateway.active() is session


async def test_json_replies_have_the_exact_content_type(fake_discord: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{fake_discord.api_base}/gateway") as response:
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["url"] == fake_discord.gateway_url


async def test_a_wrong_token_fails_start_up_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    async with fakediscord_fixtures.serving_fake_discord(monkeypatch, bot_token="right-token") as fake:
        with pytest.raises(fakediscord_fixtures.ClientStartupError) as failure:
            async with running_client(EchoBot(sync_commands=False), fake, token="wrong-token"):
                pass
    assert isinstance(failure.value.__cause__, discord.LoginFailure)
    assert [(c.path, c.status) for c in fake.calls] == [("/users/@me", 401)]


async def test_a_repeated_nonce_returns_the_first_message_like_discord(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    channel = bot.get_channel(world.text_channel.id)
    assert isinstance(channel, discord.TextChannel)
    first = await channel.send("the result", nonce="latentcord-7")
    again = await channel.send("the result", nonce="latentcord-7")  # after a crash, before it was recorded
    other = await channel.send("another result", nonce="latentcord-8")
    assert again.id == first.id and other.id != first.id
    fake_discord.clock.advance(10 * 60)  # Discord remembers nonces for a few minutes only
    later = await channel.send("the result", nonce="latentcord-7")
    assert later.id != first.id
