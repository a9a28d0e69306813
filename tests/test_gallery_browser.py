"""The web gallery in a real browser: Debian's headless Chromium signs in through the loopback Discord's OAuth2,
then the test reads the rendered page: the thumbnails load, the search filters, "Copy prompt" copies.

``LATENTCORD_DOCS_SCREENSHOT=1`` also writes the screenshot it takes to ``docs/gallery.png`` (the README's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import gallery_helpers
from tests.browser import HeadlessChromium, find_chromium, png_size
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.test_gallery import cards_of, posted

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium on PATH (.ci/run installs Debian's chromium package)"
)

settings = gallery_helpers.settings
bot = gallery_helpers.bot
other_world = gallery_helpers.other_world
classifier = gallery_helpers.classifier

DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "gallery.png"
WIDTH, HEIGHT = 1280, 900


async def test_a_member_signs_in_searches_and_copies_a_prompt_in_chromium(
    fake_discord: FakeDiscord, world: GuildSetup, bot, tmp_path: Path
) -> None:
    the_bot, core = bot
    base = the_bot.settings.gallery_url
    prompts = [
        "a red fox in snow, watercolour",
        "paper lanterns over a river at night",
        "a lighthouse in a storm, oil painting",
    ]
    ids = [(await posted(fake_discord, world, core, prompt=prompt, seed=10 + n))[1] for n, prompt in enumerate(prompts)]
    fan = fake_discord.add_member(world.guild, "fan")
    grid = fake_discord.messages[(await core.service.job(ids[2])).result_message_id]
    await fake_discord.react(grid, "⭐", user=fan)
    fake_discord.oauth.sign_in(world.member)

    async with HeadlessChromium(width=WIDTH, height=HEIGHT) as browser:
        page = await browser.new_page()
        # 1. The gallery's address, signed out: to Discord and back, signed in, on the gallery.
        status = await page.goto(f"{base}/g/{world.guild.id}")
        assert status == 200
        assert await page.current_url() == f"{base}/g/{world.guild.id}"
        assert await page.wait_for("document.querySelectorAll('article.card').length") == 3
        shown = await page.evaluate("[...document.querySelectorAll('article.card')].map(c => Number(c.dataset.job))")
        assert shown == ids[::-1]

        # 2. Every thumbnail loaded (decoded by the browser), each over 200 from the gallery.
        loaded = await page.wait_for(
            "(() => { const imgs = [...document.querySelectorAll('article.card img')];"
            " return imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0) && imgs.length; })()"
        )
        assert loaded == 12
        thumbs = [r for r in page.responses if "/thumbs/" in r.url]
        assert len(thumbs) == 12 and all(r.status == 200 and r.mime_type == "image/webp" for r in thumbs)
        session = [c for c in await page.cookies() if c["name"] == "latentcord_session"]
        assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax"

        # 3. A screenshot of the gallery (the README's, when asked for).
        picture = await page.screenshot(tmp_path / "gallery.png")
        assert png_size(picture) == (WIDTH, HEIGHT)
        if os.environ.get("LATENTCORD_DOCS_SCREENSHOT"):
            DOCS_SCREENSHOT.write_bytes(picture)

        # 4. The search: typed and sent with Enter, the page shows the one result that matches.
        await page.type("input[name=q]", "lanterns")
        async with page.expect_navigation():
            await page.press("Enter")
        assert await page.wait_for("document.querySelectorAll('article.card').length === 1")
        assert "q=lanterns" in await page.current_url()
        text = await page.evaluate("document.querySelector('article.card .prompt').textContent")
        assert text == prompts[1]
        assert cards_of(await page.evaluate("document.documentElement.outerHTML")) == [ids[1]]

        # 5. "Copy prompt" puts the prompt on the clipboard and says so.
        await browser.grant_clipboard(base)
        await page.click("article.card button.copy")
        assert await page.wait_for("document.querySelector('article.card button.copy').textContent === 'Copied'")
        assert await page.read_clipboard() == prompts[1]

        # 6. Nothing failed to load and the Content-Security-Policy blocked nothing of the gallery's own.
        assert page.console_errors == [], json.dumps(page.console_errors, indent=1)
