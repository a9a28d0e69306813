"""Moodboards, moderators' named sets of reference pictures: through the real store on a temporary file, and
through the real bot against the loopback Discord (who may add one, what is kept where, what is refused)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import InvalidRequest
from bot.images.uploads import KeptPictures
from bot.jobs.library import Library
from bot.jobs.moderation import AttachedPicture, ModerationService
from bot.settings import Settings
from db.errors import StoreInputError
from db.records import FineTune, Moodboard, Style
from db.store import Store
from tests import discord_bot_helpers
from tests.fakediscord import FakeDiscord, FakeUpload
from tests.fakediscord.models import StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import tiny_settings
from tests.recipes import a_new_job

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

GUILD = 10
MOD = 7
SHA = "ab" * 32


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def picture(name: str, width: int, height: int, colour: tuple[int, int, int]) -> FakeUpload:
    return FakeUpload(name, png(width, height, colour), "image/png")


def damaged_png() -> bytes:
    """A real PNG of noise (so its data is not one short run), cut off halfway."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    """A few kilobytes that would inflate to 400 million pixels."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def kept_files(settings: Settings) -> list[Path]:
    sources = settings.images_dir / "sources"
    return sorted(path for path in sources.iterdir() if path.is_file()) if sources.is_dir() else []


async def answer_of(fake: FakeDiscord, world: GuildSetup, command: str, options=None, user=None) -> StoredMessage:
    """What the user sees of a command: its first message with text (after a deferral, the follow-up)."""
    ix = await fake.run_slash(command, options, user=user or world.moderator, channel=world.text_channel)
    await ix.wait_for_response(timeout=5)
    return await ix.wait_for_message(lambda message: bool(message.content), timeout=30)


async def add(fake: FakeDiscord, world: GuildSetup, name: str, *uploads: FakeUpload, user=None, **options):
    given = dict(zip(("image", "image2", "image3", "image4", "image5"), uploads, strict=False))
    return await answer_of(fake, world, "moodboard add", {"name": name, **given, **options}, user=user)


# -- the store ------------------------------------------------------------------------------------


async def test_a_set_is_kept_with_its_pictures_in_order_found_in_any_case_and_audited(store: Store) -> None:
    entry = await store.add_moodboard(
        Moodboard(GUILD, "Neon", True, ("/s/c.png", "/s/a.png", "/s/b.png")), actor_id=MOD
    )
    await store.add_moodboard(Moodboard(GUILD, "aurora", False, ("/s/a.png",)), actor_id=MOD)
    await store.add_moodboard(Moodboard(GUILD + 1, "zebra", False, ("/s/z.png",)), actor_id=MOD)

    assert [item.name for item in await store.moodboards(GUILD)] == ["aurora", "Neon"]
    assert await store.moodboard(GUILD, "NEON") == Moodboard(GUILD, "Neon", True, ("/s/c.png", "/s/a.png", "/s/b.png"))
    assert await store.moodboard(GUILD, "zebra") is None  # another server's
    assert (entry.action, entry.actor_id, entry.before, entry.after) == (
        "moodboard_added",
        MOD,
        None,
        "moodboard Neon (3 pictures, NSFW)",
    )
    assert [item.action for item in await store.audit_log(GUILD)].count("moodboard_added") == 2
    with pytest.raises(StoreInputError, match="needs at least one picture"):
        await store.add_moodboard(Moodboard(GUILD, "empty", False, ()), actor_id=MOD)


async def test_loras_embeddings_styles_and_moodboards_share_one_namespace_per_server(store: Store) -> None:
    await store.add_fine_tune(FineTune(GUILD, "ink", "lora", SHA, "tiny"), size_bytes=10, actor_id=MOD)
    await store.add_fine_tune(FineTune(GUILD, "glow", "embedding", "cd" * 32, "tiny"), size_bytes=10, actor_id=MOD)
    await store.add_style(Style(GUILD, "neon", "{prompt}, neon"), actor_id=MOD)
    await store.add_moodboard(Moodboard(GUILD, "dreamy", False, ("/s/a.png",)), actor_id=MOD)

    def lora(name: str) -> FineTune:
        return FineTune(GUILD, name, "lora", SHA, "tiny")

    def board(name: str) -> Moodboard:
        return Moodboard(GUILD, name, False, ("/s/b.png",))

    clashes = [
        (store.add_moodboard(board("INK"), actor_id=MOD), "a lora named `INK`"),
        (store.add_moodboard(board("Glow"), actor_id=MOD), "an embedding named `Glow`"),
        (store.add_moodboard(board("neon"), actor_id=MOD), "a style named `neon`"),
        (store.add_moodboard(board("Dreamy"), actor_id=MOD), "a moodboard named `Dreamy`"),
        (store.add_style(Style(GUILD, "DREAMY", "{prompt}"), actor_id=MOD), "a moodboard named `DREAMY`"),
        (store.add_style(Style(GUILD, "ink", "{prompt}"), actor_id=MOD), "a lora named `ink`"),
        (store.add_style(Style(GUILD, "neon", "{prompt}"), actor_id=MOD), "a style named `neon`"),
        (store.add_fine_tune(lora("dreamy"), size_bytes=10, actor_id=MOD), "a moodboard named `dreamy`"),
        (store.add_fine_tune(lora("Neon"), size_bytes=10, actor_id=MOD), "a style named `Neon`"),
    ]
    for call, holder in clashes:
        assert str(await _refusal(call)) == f"This server already has {holder}."

    # Nothing was stored by the refused calls; another server may use every name.
    assert [item.name for item in await store.moodboards(GUILD)] == ["dreamy"]
    assert [item.name for item in await store.styles(GUILD)] == ["neon"]
    assert sorted(item.name for item in await store.fine_tunes(GUILD)) == ["glow", "ink"]
    await store.add_moodboard(Moodboard(GUILD + 1, "ink", False, ("/s/b.png",)), actor_id=MOD)
    await store.add_style(Style(GUILD + 1, "dreamy", "{prompt}"), actor_id=MOD)


async def _refusal(call) -> StoreInputError:
    with pytest.raises(StoreInputError) as refused:
        await call
    return refused.value


async def test_removing_a_set_returns_its_pictures_and_a_picture_stays_in_use_while_another_set_names_it(
    store: Store,
) -> None:
    await store.add_moodboard(Moodboard(GUILD, "one", False, ("/s/shared.png", "/s/own.png")), actor_id=MOD)
    await store.add_moodboard(Moodboard(GUILD, "two", False, ("/s/shared.png",)), actor_id=MOD)
    assert await store.source_in_use("/s/own.png")

    entry, paths = await store.remove_moodboard(GUILD, "ONE", actor_id=MOD)
    assert paths == ("/s/shared.png", "/s/own.png")
    assert (entry.action, entry.before, entry.after) == ("moodboard_removed", "moodboard one (2 pictures)", None)
    assert [item.name for item in await store.moodboards(GUILD)] == ["two"]
    assert await store.source_in_use("/s/shared.png") and not await store.source_in_use("/s/own.png")
    assert "/s/own.png" not in await store.sources_in_use()
    assert str(await _refusal(store.remove_moodboard(GUILD, "one", actor_id=MOD))) == (
        "This server has no moodboard named `one`."
    )


async def test_the_library_finds_a_set_in_any_case_and_says_where_there_is_none(store: Store, tmp_path: Path) -> None:
    library = Library(settings=tiny_settings(tmp_path), store=store)
    await store.add_moodboard(Moodboard(GUILD, "Dreamy", False, ("/s/a.png",)), actor_id=MOD)
    assert (await library.moodboard(GUILD, "dreamy")).images == ("/s/a.png",)
    assert [item.name for item in await library.moodboards(GUILD)] == ["Dreamy"]
    assert await library.moodboards(None) == []
    with pytest.raises(InvalidRequest) as none:
        await library.moodboard(GUILD, "stormy")
    assert str(none.value) == "This server has no moodboard named `stormy`; /moodboard list shows them."
    with pytest.raises(InvalidRequest) as outside:
        await library.moodboard(None, "Dreamy")
    assert str(outside.value) == "Moodboards belong to a server; use one there."


async def test_a_set_whose_name_is_taken_while_its_pictures_download_keeps_no_picture(
    store: Store, tmp_path: Path
) -> None:
    """The name is free when checked, taken (by a style) before the set is recorded: the kept pictures go."""
    with ThreadPoolExecutor(1) as disk:
        pictures = KeptPictures(tmp_path / "images", disk)
        moderation = ModerationService(
            store=store,
            settings=tiny_settings(tmp_path),
            worker=None,  # type: ignore[arg-type]  # a moodboard asks no worker
            pictures=pictures,
        )
        downloading, go_on = asyncio.Event(), asyncio.Event()

        async def read() -> bytes:
            downloading.set()
            await go_on.wait()
            return png(64, 48, (5, 6, 7))

        adding = asyncio.create_task(
            moderation.add_moodboard(
                GUILD, "dreamy", [AttachedPicture("a.png", "image/png", 300, read)], nsfw=False, actor_id=MOD
            )
        )
        await downloading.wait()
        await store.add_style(Style(GUILD, "dreamy", "{prompt}"), actor_id=MOD)
        go_on.set()
        with pytest.raises(StoreInputError, match="already has a style named `dreamy`"):
            await adding
        assert await store.moodboards(GUILD) == [] and list(pictures.folder.iterdir()) == []

        # The same picture for a set recorded: kept, and let go once the set is removed.
        go_on.set()
        added, _ = await moderation.add_moodboard(
            GUILD, "calm", [AttachedPicture("a.png", "image/png", 300, read)], nsfw=False, actor_id=MOD
        )
        assert [path.name for path in pictures.folder.iterdir()] == [Path(added.images[0]).name]
        await moderation.remove_moodboard(GUILD, "calm", actor_id=MOD)
        assert list(pictures.folder.iterdir()) == []
        with pytest.raises(InvalidRequest, match="holds 1 to 5 pictures, not 6"):
            await moderation.add_moodboard(
                GUILD, "many", [AttachedPicture("a.png", "image/png", 300, read)] * 6, nsfw=False, actor_id=MOD
            )


# -- the bot, through Discord ----------------------------------------------------------------------


async def test_a_moderator_adds_lists_and_removes_sets_and_every_change_reaches_the_log(
    fake_discord: FakeDiscord, world: GuildSetup, bot, settings: Settings
) -> None:
    _, core = bot
    assert (await answer_of(fake_discord, world, "modlog", {"channel": world.log_channel})).ephemeral
    assert (await answer_of(fake_discord, world, "moodboard list")).content == (
        "This server has no moodboards yet: /moodboard add adds one."
    )
    wide = picture("wide.png", 1600, 1200, (200, 40, 40))  # 1.92 megapixels: kept at most 1024x1024's

    # 1. One picture.
    one = await add(fake_discord, world, "dreamy", wide)
    assert one.ephemeral
    assert one.content == (
        "Added the moodboard `dreamy` with 1 picture; members use it with `--mood dreamy` or `mood:dreamy`."
    )
    dreamy = await core.store.moodboard(world.guild.id, "dreamy")
    assert dreamy is not None and not dreamy.nsfw and len(dreamy.images) == 1

    # 2. Five, one of them the same picture as dreamy's, marked NSFW.
    others = [picture(f"p{n}.jpg", 300 + 40 * n, 200, (20 * n, 90, 160)) for n in range(1, 5)]
    five = await add(fake_discord, world, "Stormy", others[0], wide, *others[1:], nsfw=True)
    assert five.ephemeral and "`Stormy` with 5 pictures" in five.content and "marked NSFW" in five.content
    stormy = await core.store.moodboard(world.guild.id, "stormy")
    assert stormy is not None and stormy.nsfw and stormy.images[1] == dreamy.images[0]

    listed = await answer_of(fake_discord, world, "moodboard list")
    assert listed.ephemeral and listed.content == (
        "This server's moodboards:\n`dreamy` · 1 picture\n`Stormy` · 5 pictures · NSFW"
    )

    # 3. Each picture kept once, named by its content, at most a reference's size, its aspect kept.
    sources = settings.images_dir / "sources"
    assert kept_files(settings) == sorted(Path(path) for path in set(stormy.images))
    assert len(kept_files(settings)) == 5
    for path in map(Path, stormy.images):
        assert path.parent == sources and path.name == f"{hashlib.sha256(path.read_bytes()).hexdigest()}.png"
        with Image.open(path) as kept:
            assert kept.width * kept.height <= 1024 * 1024
    with Image.open(dreamy.images[0]) as kept:
        assert kept.width * kept.height > 1000 * 1000 and abs(kept.width / kept.height - 4 / 3) < 0.01
    with Image.open(stormy.images[0]) as kept:
        assert kept.size == (340, 200)  # small enough: as given

    # 4. Autocomplete offers the server's sets.
    typed = await fake_discord.autocomplete(
        "moodboard remove", {"name": "st"}, focused="name", user=world.moderator, channel=world.text_channel
    )
    assert [choice["value"] for choice in (await typed.wait_for_response()).choices] == ["Stormy"]

    # 5. Removed: its pictures go, but for dreamy's and one a queued job still names.
    job_picture = stormy.images[2]
    await core.store.admit_job(a_new_job(guild_id=world.guild.id, reference_images=(job_picture,)), limit=None)
    removed = await answer_of(fake_discord, world, "moodboard remove", {"name": "stormy"})
    assert removed.ephemeral and removed.content == "The moodboard `stormy` is no longer on this server's list."
    assert await core.store.moodboard(world.guild.id, "stormy") is None
    assert kept_files(settings) == sorted([Path(dreamy.images[0]), Path(job_picture)])
    assert "`Stormy`" not in (await answer_of(fake_discord, world, "moodboard list")).content
    again = await answer_of(fake_discord, world, "moodboard remove", {"name": "stormy"})
    assert again.ephemeral and again.content == "This server has no moodboard named `stormy`."

    # 6. Audited, and told to the moderators' log.
    actions = [entry.action for entry in await core.store.audit_log(world.guild.id)]
    assert actions.count("moodboard_added") == 2 and actions.count("moodboard_removed") == 1
    await fake_discord.wait_for_message(world.log_channel, lambda m: "moodboard removed" in m.content, timeout=5)
    log = [m.content for m in fake_discord.channel_messages(world.log_channel)]
    assert any("moodboard added" in line and "moodboard Stormy (5 pictures, NSFW)" in line for line in log)
    assert any(f"<@{world.moderator.user.id}>" in line and "moodboard removed" in line for line in log)


async def test_a_member_without_manage_server_cannot_add_one(
    fake_discord: FakeDiscord, world: GuildSetup, bot, settings: Settings
) -> None:
    _, core = bot
    answer = await add(fake_discord, world, "dreamy", picture("a.png", 64, 64, (1, 2, 3)), user=world.member)
    assert answer.ephemeral and answer.content == "You need the Manage Server permission to use /moodboard add."
    assert await core.store.moodboards(world.guild.id) == [] and kept_files(settings) == []


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("x", "A name must be 2-32 letters, digits, - or _."),
        ("two words", "A name must be 2-32 letters, digits, - or _."),
        ("a" * 33, "A name must be 2-32 letters, digits, - or _."),
        ("nude", "`nude` reads as a word of the built-in NSFW list; choose another name."),
    ],
)
async def test_a_bad_name_is_refused_with_a_sentence_and_nothing_kept(
    fake_discord: FakeDiscord, world: GuildSetup, bot, settings: Settings, name: str, sentence: str
) -> None:
    _, core = bot
    answer = await add(fake_discord, world, name, picture("a.png", 64, 64, (1, 2, 3)))
    assert answer.ephemeral and answer.content == sentence
    assert await core.store.moodboards(world.guild.id) == [] and kept_files(settings) == []


async def test_a_name_a_style_has_is_refused_and_a_style_cannot_take_a_sets_name(
    fake_discord: FakeDiscord, world: GuildSetup, bot, settings: Settings
) -> None:
    _, core = bot
    await answer_of(fake_discord, world, "style add", {"name": "neon", "prompt": "{prompt}, neon lights"})
    clash = await add(fake_discord, world, "Neon", picture("a.png", 64, 64, (1, 2, 3)))
    assert clash.ephemeral and clash.content == "This server already has a style named `Neon`."
    assert await core.store.moodboards(world.guild.id) == [] and kept_files(settings) == []

    assert "`dreamy`" in (await add(fake_discord, world, "dreamy", picture("a.png", 64, 64, (1, 2, 3)))).content
    taken = await answer_of(fake_discord, world, "style add", {"name": "DREAMY", "prompt": "{prompt}"})
    assert taken.ephemeral and taken.content == "This server already has a moodboard named `DREAMY`."
    assert [style.name for style in await core.store.styles(world.guild.id)] == ["neon"]
    twice = await add(fake_discord, world, "dreamy", picture("b.png", 64, 64, (9, 9, 9)))
    assert twice.content == "This server already has a moodboard named `dreamy`."
    assert len(kept_files(settings)) == 1  # only the first set's picture


@pytest.mark.parametrize(
    ("upload", "sentence"),
    [
        (FakeUpload("notes.txt", b"just some text", "text/plain"), "That file is not a picture"),
        (FakeUpload("fake.png", b"\x89PNG\r\n\x1a\n but not really", "image/png"), "That file is not a picture"),
        (FakeUpload("huge.png", b"\0" * (10 * 1024 * 1024 + 1), "image/png"), "may be at most 10 MB"),
        (FakeUpload("bomb.png", bomb_png(), "image/png"), "That picture has too many pixels"),
        (FakeUpload("cut.png", damaged_png(), "image/png"), "That picture could not be read"),
    ],
    ids=["not-an-image", "not-a-png", "over-10-mb", "decompression-bomb", "damaged"],
)
async def test_a_bad_picture_is_refused_with_a_sentence_naming_it_and_nothing_is_kept(
    fake_discord: FakeDiscord, world: GuildSetup, bot, settings: Settings, upload: FakeUpload, sentence: str
) -> None:
    _, core = bot
    good = picture("good.png", 64, 64, (10, 200, 30))
    answer = await add(fake_discord, world, "dreamy", good, upload)
    assert answer.ephemeral and answer.content.startswith(f"`{upload.filename}`: ") and sentence in answer.content
    assert ". " not in answer.content and answer.content.endswith(".")  # one sentence
    assert await core.store.moodboards(world.guild.id) == []
    assert kept_files(settings) == []  # not even the good picture before it
    assert "moodboard_added" not in [entry.action for entry in await core.store.audit_log(world.guild.id)]
