"""The web gallery (WEB_PORT) through the real bot, its HTTP server and the loopback Discord's OAuth2.

A member signs in with Discord as a browser would (``/login`` → Discord's authorize page → ``/callback``),
then reads their server's gallery: what it shows, what it never shows (by URL guessing too), search and
filters, sessions, CSRF, the Content-Security-Policy and paths outside the images folder.
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import replace
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from yarl import URL

from bot.images.archive import image_path
from bot.images.thumbnails import thumbnail_path
from bot.web import server as gallery_module
from bot.web.server import CONTENT_SECURITY_POLICY
from bot.web.sessions import SESSION_COOKIE, STATE_COOKIE
from cogs.gallery import GALLERY_OFF
from tests import gallery_helpers
from tests.discord_bot_helpers import finished_grid, imagine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.gallery_helpers import Browser, sign_in

settings = gallery_helpers.settings
bot = gallery_helpers.bot
other_world = gallery_helpers.other_world
classifier = gallery_helpers.classifier
browser = gallery_helpers.browser

CARD = re.compile(r'<article class="card" id="job-(\d+)"')


def cards_of(html: str) -> list[int]:
    return [int(found) for found in CARD.findall(html)]


def job_id_of(grid) -> int:
    return int(grid.button(label="Delete")["custom_id"].split(":")[2])


async def posted(fake: FakeDiscord, world: GuildSetup, core, *, prompt: str, user=None, channel=None, **options):
    """An /imagine posted and recorded as delivered: its grid message and job id."""
    grid = await finished_grid(await imagine(fake, world, user=user, channel=channel, prompt=prompt, **options))
    job_id = job_id_of(grid)
    async with asyncio.timeout(60):
        while True:
            job = await core.service.job(job_id)
            if job is not None and job.delivery == "delivered" and job.result_message_id == grid.id:
                return grid, job_id
            await asyncio.sleep(0.05)


async def test_signing_in_with_discord_opens_the_servers_gallery_newest_first(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    _, core = bot
    fan = fake_discord.add_member(world.guild, "fan")
    _, fox = await posted(fake_discord, world, core, prompt="a red fox in snow", seed=5, negative="blurry")
    grid, owl = await posted(fake_discord, world, core, prompt="an owl at dusk", user=world.moderator, seed=6)
    await fake_discord.react(grid, "⭐", user=fan)

    # 1. Signed out: the page asks to sign in, and a server's gallery sends to /login with the way back.
    status, html = await browser.text("/")
    assert status == 200 and "Sign in with Discord" in html
    away = await browser.get(f"/g/{world.guild.id}", allow_redirects=False)
    assert away.status == 302 and away.headers["Location"] == f"/login?next=/g/{world.guild.id}"

    # 2. /login: a signed state cookie, and Discord's authorize page with both scopes and that state.
    fake_discord.oauth.sign_in(world.member)
    login = await browser.get(f"/login?next=/g/{world.guild.id}", allow_redirects=False)
    assert login.status == 302
    authorize = urlsplit(login.headers["Location"])
    query = parse_qs(authorize.query)
    assert authorize.path == "/oauth2/authorize" and query["scope"] == ["identify guilds"]
    assert query["redirect_uri"] == [f"{browser.base}/callback"] and query["response_type"] == ["code"]
    state_cookie = login.cookies[STATE_COOKIE]
    assert state_cookie["httponly"] and state_cookie["samesite"] == "Lax" and not state_cookie["secure"]

    # 3. Discord approves and sends the browser back; the callback starts a session and goes to the gallery.
    approved = await browser.http.get(login.headers["Location"], allow_redirects=False)
    callback = approved.headers["Location"]
    assert callback.startswith(f"{browser.base}/callback?")
    landed = await browser.http.get(callback, allow_redirects=False)
    assert landed.status == 302 and landed.headers["Location"] == f"/g/{world.guild.id}"
    session_cookie = landed.cookies[SESSION_COOKIE]
    assert session_cookie["httponly"] and session_cookie["samesite"] == "Lax"
    assert "fake-client-secret" not in str([call.body for call in fake_discord.calls])

    # 4. The gallery: both results, the newest first, with what made them and who.
    status, html = await browser.text(f"/g/{world.guild.id}")
    assert status == 200 and cards_of(html) == [owl, fox]
    fox_card = html[html.index(f'id="job-{fox}"') :]
    assert "a red fox in snow" in fox_card and "blurry" in fox_card and "builtin:tiny" in fox_card
    seeds = (await core.service.job(fox)).recipe.seeds
    assert f'<dd class="seeds">{", ".join(str(seed) for seed in seeds)}</dd>' in fox_card
    member = world.member
    assert f'<dd class="made-by">{member.nick or member.user.global_name or member.user.username}</dd>' in fox_card
    owl_card = html[html.index(f'id="job-{owl}"') : html.index(f'id="job-{fox}"')]
    assert "★ 1" in owl_card and 'data-prompt="an owl at dusk"' in owl_card
    assert f"/g/{world.guild.id}/thumbs/{fox}/1.webp" in fox_card

    # 5. Its images and thumbnails: the stored image itself, thumbnails WebP (made as the result was posted,
    #    so the first visit does not wait for them), both cached privately.
    made = thumbnail_path(image_path(core.settings.images_dir, fox, 1), 1)
    async with asyncio.timeout(30):
        while not made.is_file():
            await asyncio.sleep(0.05)
    full = await browser.get(f"/g/{world.guild.id}/images/{fox}/2.png")
    assert full.status == 200 and full.headers["Content-Type"] == "image/png"
    assert full.headers["Cache-Control"] == "private, max-age=86400"
    assert await full.read() == image_path(core.settings.images_dir, fox, 1).read_bytes()
    thumb = await browser.get(f"/g/{world.guild.id}/thumbs/{fox}/2.webp")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(await thumb.read())) as picture:
        assert picture.format == "WEBP" and picture.size == (64, 64)
    again = await browser.get(
        f"/g/{world.guild.id}/thumbs/{fox}/2.webp", headers={"If-None-Match": thumb.headers["ETag"]}
    )
    assert again.status == 304

    # 6. Every answer carries the security headers, an error page too.
    for answer in (full, thumb, await browser.get("/nowhere"), await browser.get(f"/g/{world.guild.id}")):
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY


async def test_search_and_filters_find_prompts_members_and_models(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    _, core = bot
    _, fox = await posted(fake_discord, world, core, prompt="a red fox in snow")
    _, lantern = await posted(fake_discord, world, core, prompt="paper lanterns over a river", user=world.moderator)
    _, foxes = await posted(fake_discord, world, core, prompt="two foxes asleep", user=world.moderator)
    await sign_in(fake_discord, browser, world.member)
    base = f"/g/{world.guild.id}"

    assert cards_of((await browser.text(f"{base}?q=fox"))[1]) == [foxes, fox]  # the last word as a prefix
    assert cards_of((await browser.text(f"{base}?q=fox*"))[1]) == [foxes, fox]  # FTS5's syntax is read as words
    assert cards_of((await browser.text(f"{base}?q=FOX+SNOW"))[1]) == [fox]
    assert cards_of((await browser.text(f"{base}?q=snow+fox"))[1]) == [fox]
    assert cards_of((await browser.text(f"{base}?q=lant"))[1]) == [lantern]
    status, html = await browser.text(f"{base}?q=%22%29+OR+NEAR%28")
    assert status == 200 and cards_of(html) == [] and "No result matches this search." in html

    assert cards_of((await browser.text(f"{base}?member={world.moderator.user.id}"))[1]) == [foxes, lantern]
    assert cards_of((await browser.text(f"{base}?member={world.member.user.id}&q=fox"))[1]) == [fox]
    assert cards_of((await browser.text(f"{base}?model=builtin:tiny"))[1]) == [foxes, lantern, fox]
    assert cards_of((await browser.text(f"{base}?model=someone/else"))[1]) == []
    html = (await browser.text(base))[1]
    assert f'<option value="{world.moderator.user.id}">' in html and '<option value="builtin:tiny">' in html

    status, html = await browser.text(f"{base}?page=abc")
    assert status == 400 and "pages are numbered from 1" in html
    status, html = await browser.text(f"{base}?member=../../x")
    assert status == 400 and "Choose a member from the list" in html


async def test_pages_hold_twelve_results_and_link_to_older_ones(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, core = bot
    monkeypatch.setattr(gallery_module, "CARDS_PER_PAGE", 2)
    ids = [(await posted(fake_discord, world, core, prompt=f"a lighthouse number {n}"))[1] for n in range(3)]
    await sign_in(fake_discord, browser, world.member)
    html = (await browser.text(f"/g/{world.guild.id}?q=lighthouse"))[1]
    assert cards_of(html) == [ids[2], ids[1]] and f'href="/g/{world.guild.id}?q=lighthouse&amp;page=2"' in html
    html = (await browser.text(f"/g/{world.guild.id}?q=lighthouse&page=2"))[1]
    assert cards_of(html) == [ids[0]] and "Older" not in html and "Newer" in html


async def test_hidden_results_are_never_shown_nor_served(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser, classifier
) -> None:
    the_bot, core = bot
    await the_bot.moderation.set_nsfw_mode(world.guild.id, "age-restricted", actor_id=world.owner.user.id)
    leaver = fake_discord.add_member(world.guild, "leaver")
    _, shown = await posted(fake_discord, world, core, prompt="a shown castle")
    _, adult = await posted(fake_discord, world, core, prompt="a castle after dark", channel=world.nsfw_channel)
    grid, pressed = await posted(fake_discord, world, core, prompt="a castle deleted by its button")
    press = await fake_discord.press_button(grid, user=world.member, label="Delete")
    await press.wait_for_response(timeout=10)
    grid, removed = await posted(fake_discord, world, core, prompt="a castle whose message was deleted")
    fake_discord.delete_message(grid)
    _, forgotten = await posted(fake_discord, world, core, prompt="a castle of someone who left", user=leaver)
    classifier.flagged = {1}
    _, partly = await posted(fake_discord, world, core, prompt="a castle partly withheld")
    classifier.flagged = set()

    async def deleted(job_id: int) -> bool:
        job = await core.service.job(job_id)
        return job is not None and job.result_deleted_at is not None

    async with asyncio.timeout(30):
        while not (await deleted(pressed) and await deleted(removed)):
            await asyncio.sleep(0.05)
    await core.service.privacy.delete(leaver.user.id)

    await sign_in(fake_discord, browser, world.member)
    base = f"/g/{world.guild.id}"
    html = (await browser.text(base))[1]
    assert cards_of(html) == [partly, shown]
    assert "a castle of someone who left" not in html and "after dark" not in html
    assert cards_of((await browser.text(f"{base}?q=castle"))[1]) == [partly, shown]
    assert cards_of((await browser.text(f"{base}?member={leaver.user.id}"))[1]) == []
    assert f"/thumbs/{partly}/2.webp" not in html and f"/thumbs/{partly}/1.webp" in html

    async with asyncio.timeout(30):  # each image's own file is cut from its grid after the grid is posted
        while not all(image_path(core.settings.images_dir, job, 3).is_file() for job in (adult, partly)):
            await asyncio.sleep(0.05)
    folder = image_path(core.settings.images_dir, adult, 0).parent
    assert not list(folder.glob("thumb-*")), "no thumbnail is made of what a gallery never shows"
    assert not thumbnail_path(image_path(core.settings.images_dir, partly, 1), 1).exists()

    # By URL guessing: every image and thumbnail of a hidden result, and the withheld image, are not found.
    for job_id in (adult, pressed, removed, forgotten):
        for n in (1, 2, 3, 4):
            for kind, suffix in (("images", "png"), ("thumbs", "webp")):
                answer = await browser.get(f"{base}/{kind}/{job_id}/{n}.{suffix}")
                assert answer.status == 404, (job_id, n, kind)
    assert (await browser.get(f"{base}/images/{partly}/2.png")).status == 404
    assert (await browser.get(f"{base}/thumbs/{partly}/2.webp")).status == 404
    assert (await browser.get(f"{base}/images/{partly}/3.png")).status == 200
    assert (await browser.get(f"{base}/images/{shown}/5.png")).status == 404
    # A shown result under another server's address is not found either.
    assert (await browser.get(f"/g/{world.guild.id + 1}/images/{shown}/1.png")).status == 404


async def test_a_member_of_another_server_sees_nothing_of_this_one(
    fake_discord: FakeDiscord, world: GuildSetup, other_world: GuildSetup, bot, browser: Browser
) -> None:
    _, core = bot
    _, job = await posted(fake_discord, world, core, prompt="a secret garden")

    # Not signed in, or with a forged cookie: no image, and the gallery asks to sign in.
    assert (await browser.get(f"/g/{world.guild.id}/images/{job}/1.png")).status == 404
    browser.http.cookie_jar.update_cookies({SESSION_COOKIE: "forged.token"}, response_url=URL(browser.base))
    assert (await browser.get(f"/g/{world.guild.id}", allow_redirects=False)).status == 302

    # Signed in as a member of the other server only.
    landed = await sign_in(fake_discord, browser, other_world.member)
    assert landed.status == 200 and "Another Server" in await landed.text()
    assert "Latentcord Test Server" not in await landed.text()
    status, html = await browser.text(f"/g/{world.guild.id}")
    assert status == 403 and "a secret garden" not in html and "This gallery is for members" in html
    assert (await browser.get(f"/g/{world.guild.id}/images/{job}/1.png")).status == 404
    assert (await browser.get(f"/g/{world.guild.id}/thumbs/{job}/1.webp")).status == 404
    status, html = await browser.text(f"/g/{other_world.guild.id}")
    assert status == 200 and cards_of(html) == []


async def test_no_route_serves_a_file_outside_the_images_folder(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, core = bot
    _, job = await posted(fake_discord, world, core, prompt="a map of the maze")
    await sign_in(fake_discord, browser, world.member)
    secret = core.settings.database_path.read_bytes()[:16]
    tries = [
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2fsettings.py",
        "/static/%2e%2e/server.py",
        "/static/server.py",
        f"/g/{world.guild.id}/images/{job}/..%2f..%2fbot.sqlite3",
        f"/g/{world.guild.id}/images/../../bot.sqlite3",
        f"/g/{world.guild.id}/images/{job}/1.png/../../../bot.sqlite3",
        f"/g/{world.guild.id}/thumbs/{job}/%2e%2e%2f1.webp",
        "/g/../../etc/passwd",
        "//etc/passwd",
    ]
    for path in tries:
        answer = await browser.http.get(browser.base + path, allow_redirects=False)
        body = await answer.read()
        assert answer.status in (404, 400), (path, answer.status)
        assert b"root:" not in body and secret not in body, path
    assert (await browser.get("/static/gallery.css")).status == 200

    # The disk failing mid-page: a sentence, the traceback only in the log, the headers still on.
    async def failing(*args: object, **kwargs: object) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(core.store, "gallery_page", failing)
    answer = await browser.get(f"/g/{world.guild.id}")
    text = await answer.text()
    assert answer.status == 500 and "The gallery could not answer that" in text and "disk I/O" not in text
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


async def test_signing_out_needs_the_forms_csrf_token(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    the_bot, core = bot
    html = await (await sign_in(fake_discord, browser, world.member)).text()
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token is not None

    refused = await browser.http.post(browser.base + "/logout", data={"csrf": "not-it"}, allow_redirects=False)
    assert refused.status == 403 and "This form has expired" in await refused.text()
    assert (await browser.get(f"/g/{world.guild.id}")).status == 200  # still signed in

    done = await browser.http.post(browser.base + "/logout", data={"csrf": token.group(1)}, allow_redirects=False)
    assert done.status == 302
    assert (await browser.get(f"/g/{world.guild.id}", allow_redirects=False)).status == 302
    rows = await core.store._read("SELECT COUNT(*) FROM web_sessions")
    assert rows[0][0] == 0


async def test_sign_in_refusals_start_no_session(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    _, core = bot
    # 1. A callback this browser did not start (no state cookie, or another state): refused, nothing kept.
    status, html = await browser.text("/callback?code=abc&state=xyz")
    assert status == 400 and "did not start here" in html
    fake_discord.oauth.sign_in(world.member)
    login = await browser.get("/login", allow_redirects=False)
    approved = await browser.http.get(login.headers["Location"], allow_redirects=False)
    tampered = re.sub(r"state=[^&]+", "state=someone-elses", approved.headers["Location"])
    assert (await browser.http.get(tampered)).status == 400

    # 2. The member pressed Cancel on Discord's page.
    fake_discord.oauth.deny_next()
    answer = await sign_in(fake_discord, browser, world.member)
    assert answer.status == 403 and "you are not signed in" in await answer.text()

    # 3. The owner's client secret is wrong: the member is told to tell the owner; the secret is not shown.
    fake_discord.oauth.client_secret = "rotated"
    answer = await sign_in(fake_discord, browser, world.member)
    text = unescape(await answer.text())
    assert answer.status == 502 and "tell the bot's owner" in text and "fake-client-secret" not in text
    rows = await core.store._read("SELECT COUNT(*) FROM web_sessions")
    assert rows[0][0] == 0

    # 4. The page a sign-in returns to is one of the gallery's own, never another site.
    fake_discord.oauth.client_secret = "fake-client-secret"
    for elsewhere in ("https://evil.example/", "//evil.example", "/g/1/../../x"):
        login = await browser.get(f"/login?next={elsewhere}", allow_redirects=False)
        approved = await browser.http.get(login.headers["Location"], allow_redirects=False)
        landed = await browser.http.get(approved.headers["Location"], allow_redirects=False)
        assert landed.status == 302 and landed.headers["Location"] == "/", elsewhere


async def test_gallery_command_answers_with_the_servers_link(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    the_bot, _ = bot
    ix = await fake_discord.run_slash("gallery", {}, user=world.member, channel=world.text_channel)
    answer = await ix.wait_for_response(timeout=10)
    content = answer.content or ""
    assert answer.ephemeral and f"{the_bot.settings.gallery_url}/g/{world.guild.id}" in content
    assert "age-restricted" in content
    ix = await fake_discord.run_slash("gallery", {}, user=world.member, channel=world.nsfw_channel)
    answer = await ix.wait_for_response(timeout=10)
    assert answer.ephemeral and "What you make in this channel stays out of it." in (answer.content or "")

    the_bot.settings = replace(the_bot.settings, web_port=None)  # as a bot without WEB_PORT answers
    ix = await fake_discord.run_slash("gallery", {}, user=world.member, channel=world.text_channel)
    answer = await ix.wait_for_response(timeout=10)
    assert answer.ephemeral and answer.content == GALLERY_OFF


def test_cookies_are_secure_when_the_gallery_is_served_over_https(tmp_path) -> None:
    from typing import Any, cast

    from aiohttp import web

    from bot.web.server import gallery_server
    from tests.helpers import tiny_settings

    def cookie_of(public_url: str) -> str:
        configured = tiny_settings(
            tmp_path, web_port=8080, web_public_url=public_url, discord_client_secret="fake-client-secret"
        )
        server = gallery_server(
            settings=configured,
            store=cast(Any, None),
            service=cast(Any, None),
            api_base="https://discord.com/api/v10",
            client_id="123",
            bot_guilds=dict,
        )
        response = web.Response()
        server._cookies.set(response, SESSION_COOKIE, "value", max_age=60)
        assert server._oauth.authorize_url("s").startswith("https://discord.com/oauth2/authorize?")
        assert "fake-client-secret" not in repr(server._oauth)
        return response.cookies[SESSION_COOKIE].OutputString()

    assert "Secure" in cookie_of("https://gallery.example.org") and "HttpOnly" in cookie_of("https://g.example")
    assert "Secure" not in cookie_of("http://127.0.0.1:8080") and "SameSite=Lax" in cookie_of("http://x.example")


def test_the_gallery_benchmark_runs_and_prints_its_figures() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "bench/bench_gallery.py", "--runs", "1", "--side", "64"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "page of 48 thumbnails, first load (thumbnails made):" in done.stdout
    assert re.search(r"later loads over 1 runs: min \d+ ms, median \d+ ms, max \d+ ms", done.stdout)


async def test_results_leave_the_gallery_when_discord_deletes_them_in_bulk_or_with_their_channel(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    _, core = bot
    art = fake_discord.add_text_channel(world.guild, "art")
    kept_grid, kept = await posted(fake_discord, world, core, prompt="a kept harbour")
    first_grid, first = await posted(fake_discord, world, core, prompt="a purged harbour")
    second_grid, second = await posted(fake_discord, world, core, prompt="another purged harbour")
    _, in_art = await posted(fake_discord, world, core, prompt="a harbour in a deleted channel", channel=art)
    await sign_in(fake_discord, browser, world.member)
    base = f"/g/{world.guild.id}"
    assert cards_of((await browser.text(base))[1]) == [in_art, second, first, kept]

    fake_discord.bulk_delete_messages([first_grid, second_grid])
    fake_discord.delete_channel(art)

    async def deleted(job_id: int) -> bool:
        job = await core.service.job(job_id)
        return job is not None and job.result_deleted_at is not None

    async with asyncio.timeout(30):
        while not all([await deleted(first), await deleted(second), await deleted(in_art)]):
            await asyncio.sleep(0.05)
    assert not await deleted(kept) and not kept_grid.deleted
    assert cards_of((await browser.text(base))[1]) == [kept]
    for job_id in (first, second, in_art):
        assert (await browser.get(f"{base}/images/{job_id}/1.png")).status == 404


async def test_a_sign_in_started_under_another_name_of_the_server_moves_to_the_public_address_first(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    port = urlsplit(browser.base).port
    elsewhere = await browser.http.get(f"http://localhost:{port}/login?next=/g/{world.guild.id}", allow_redirects=False)
    assert elsewhere.status == 302
    assert elsewhere.headers["Location"] == f"{browser.base}/login?next=%2Fg%2F{world.guild.id}&moved=1"
    assert STATE_COOKIE not in elsewhere.cookies  # no state left where Discord's redirect cannot bring it back
    fake_discord.oauth.sign_in(world.member)
    landed = await browser.get(elsewhere.headers["Location"].removeprefix(browser.base))
    assert landed.status == 200 and str(landed.url) == f"{browser.base}/g/{world.guild.id}"
    # Once moved, never again (a proxy that rewrites the Host header must not loop).
    again = await browser.http.get(f"http://localhost:{port}/login?moved=1", allow_redirects=False)
    assert urlsplit(again.headers["Location"]).path == "/oauth2/authorize"


async def test_python_m_bot_with_a_taken_web_port_stops_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path, model_cache_dir
) -> None:
    import socket

    from tests.fakediscord.fixtures import serving_fake_discord
    from tests.test_startup import assert_one_sentence, bot_env, run_bot_process

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with serving_fake_discord(monkeypatch) as fake:
            env = bot_env(
                tmp_path,
                model_cache_dir,
                DISCORD_TOKEN="fake-bot-token",
                DISCORD_API_URL=fake.api_base,
                DISCORD_GATEWAY_URL=fake.gateway_url,
                LOG_LEVEL="WARNING",
                WEB_PORT=str(port),
                DISCORD_CLIENT_SECRET="the-client-s3cret",
            )
            returncode, stderr = await run_bot_process(tmp_path, env)
    assert_one_sentence(
        returncode,
        stderr,
        f"error: cannot serve the gallery on 127.0.0.1:{port} (Address already in use); choose another WEB_PORT, "
        "or leave it unset to turn the gallery off.",
    )
    assert "the-client-s3cret" not in stderr


async def test_a_grid_shows_its_upscales_and_an_upscale_of_an_upscale_is_a_card_of_its_own(
    fake_discord: FakeDiscord, world: GuildSetup, bot, browser: Browser
) -> None:
    from tests.discord_bot_helpers import press_and_wait

    _, core = bot
    grid, grid_job = await posted(fake_discord, world, core, prompt="a windmill at noon")
    upscaled = await press_and_wait(fake_discord, grid, "U2", world)
    again = await press_and_wait(fake_discord, upscaled, "Upscale (Subtle)", world)
    upscale_job, again_job = job_id_of(upscaled), job_id_of(again)

    async def delivered(job_id: int) -> bool:
        job = await core.service.job(job_id)
        return job is not None and job.delivery == "delivered"

    async with asyncio.timeout(60):
        while not (await delivered(upscale_job) and await delivered(again_job)):
            await asyncio.sleep(0.05)
    await sign_in(fake_discord, browser, world.member)
    page = (await browser.text(f"/g/{world.guild.id}"))[1]
    assert cards_of(page) == [again_job, grid_job]
    grid_card = page[page.index(f'id="job-{grid_job}"') :]
    assert f"/thumbs/{upscale_job}/1.webp" in grid_card and "Upscale U2 of job" in grid_card
    assert (await browser.get(f"/g/{world.guild.id}/thumbs/{upscale_job}/1.webp")).status == 200
    assert (await browser.get(f"/g/{world.guild.id}/images/{again_job}/1.png")).status == 200


async def test_a_member_who_leaves_the_server_loses_its_gallery_and_one_who_joins_gains_it(
    fake_discord: FakeDiscord, world: GuildSetup, other_world: GuildSetup, bot, browser: Browser, monkeypatch
) -> None:
    _, core = bot
    _, job = await posted(fake_discord, world, core, prompt="a lantern festival")
    monkeypatch.setattr(gallery_module, "MEMBERSHIP_CACHE_S", 0.0)  # ask Discord on every page
    # 1. Signed in as a member of the other server, who then joins this one: its gallery opens, no new sign-in.
    newcomer = other_world.member
    await sign_in(fake_discord, browser, newcomer)
    assert (await browser.get(f"/g/{world.guild.id}")).status == 403
    fake_discord.add_member(world.guild, newcomer.user)
    status, html = await browser.text(f"/g/{world.guild.id}")
    assert status == 200 and cards_of(html) == [job]
    # 2. They leave (or are kicked): the gallery and its images are gone for them at once.
    fake_discord.remove_member(world.guild.members[newcomer.user.id])
    status, html = await browser.text(f"/g/{world.guild.id}")
    assert status == 403 and "a lantern festival" not in html
    assert (await browser.get(f"/g/{world.guild.id}/thumbs/{job}/1.webp")).status == 404
    assert "Latentcord Test Server" not in (await browser.text("/"))[1]


async def test_jobs_from_before_the_gallery_show_once_their_channel_is_known_never_from_age_restricted_ones(
    tmp_path,
) -> None:
    import json
    import sqlite3

    from bot.jobs.recipe import Recipe
    from db.schema import apply_migrations, load_migrations
    from db.store import Store

    guild, plain, adult, allowed = 10, 21, 22, 23
    # 1. A database of schema 15 (the release before the gallery) holding three delivered results.
    path = tmp_path / "bot.sqlite3"
    conn = sqlite3.connect(str(path), isolation_level=None)
    apply_migrations(conn, tuple(m for m in load_migrations() if m.version <= 15))
    for job_id, channel, nsfw_allowed in ((1, plain, 0), (2, adult, 0), (3, allowed, 1)):
        conn.execute(
            "INSERT INTO jobs (id, kind, guild_id, channel_id, user_id, prompt, model, width, height, steps, "
            "guidance, seeds, cost, status, created_at, finished_at, image_paths, nsfw_allowed, delivery, "
            "result_message_id) VALUES (?, 'imagine', ?, ?, 5, ?, 'builtin:tiny', 64, 64, 3, 7, ?, 4, 'done', 1, 2, "
            "'[]', ?, 'delivered', ?)",
            (job_id, guild, channel, f"an old castle {job_id}", json.dumps([1, 2, 3, 4]), nsfw_allowed, 100 + job_id),
        )
    conn.close()

    # 2. Migrated: where NSFW was allowed, age-restricted; the rest unknown, and none of it shown yet.
    store = await Store.open(path, recipe=Recipe)
    try:
        assert [(await store.get_job(n)).age_restricted for n in (1, 2, 3)] == [None, None, True]
        assert (await store.gallery_page(guild)).cards == ()
        assert await store.gallery_page(guild, search="castle") == await store.gallery_page(guild)
        # 3. The bot sees the channels as they are (the cog does it at READY): the plain channel's result shows.
        assert await store.learn_age_restricted({plain: False, adult: True, allowed: True, 99: False}) == 2
        page = await store.gallery_page(guild)
        assert [card.job.id for card in page.cards] == [1]
        assert [card.job.id for card in (await store.gallery_page(guild, search="castle")).cards] == [1]
        assert await store.learn_age_restricted({adult: False}) == 0  # known once, never flipped back to shown
        assert (await store.gallery_job(guild, 2)) is None
    finally:
        await store.close()
