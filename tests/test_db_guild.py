"""Guild settings, filter terms and the audit log on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from db import GuildSettings, Store, StoreInputError
from tests.helpers import T0, FakeClock


def table(path: Path, name: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    rows = sorted(conn.execute(f"SELECT * FROM {name}").fetchall())
    conn.close()
    return rows


async def test_an_unconfigured_guild_gets_the_defaults(store: Store, db_path: Path) -> None:
    assert await store.guild_settings(10) == GuildSettings(
        guild_id=10, nsfw_mode="block", daily_credits=None, log_channel_id=None
    )
    assert table(db_path, "guild_settings") == []  # reading does not create a row


async def test_each_setting_change_is_audited_with_who_before_and_after(store: Store, clock: FakeClock) -> None:
    await store.set_nsfw_mode(10, "age-restricted", actor_id=7)
    clock.now += 1
    await store.set_guild_daily_credits(10, 40, actor_id=8)
    clock.now += 1
    await store.set_log_channel(10, 555, actor_id=7)
    clock.now += 1
    await store.set_nsfw_mode(10, "block", actor_id=9)
    clock.now += 1
    await store.set_guild_daily_credits(10, None, actor_id=8)

    assert await store.guild_settings(10) == GuildSettings(
        guild_id=10, nsfw_mode="block", daily_credits=None, log_channel_id=555
    )
    log = [(e.actor_id, e.action, e.before, e.after, e.at) for e in await store.audit_log(10)]
    assert log == [  # newest first
        (8, "daily_credits", "40", None, T0 + 4),
        (9, "nsfw_mode", "age-restricted", "block", T0 + 3),
        (7, "log_channel", None, "555", T0 + 2),
        (8, "daily_credits", None, "40", T0 + 1),
        (7, "nsfw_mode", "block", "age-restricted", T0),
    ]
    assert all(entry.guild_id == 10 for entry in await store.audit_log(10))


async def test_audit_log_is_per_guild_and_limited(store: Store) -> None:
    for credits in range(5):
        await store.set_guild_daily_credits(10, credits, actor_id=7)
    await store.set_nsfw_mode(11, "age-restricted", actor_id=7)

    assert [entry.after for entry in await store.audit_log(10, limit=2)] == ["4", "3"]
    assert [entry.action for entry in await store.audit_log(11)] == ["nsfw_mode"]
    assert (await store.guild_settings(11)).nsfw_mode == "age-restricted"
    assert (await store.guild_settings(10)).nsfw_mode == "block"


@pytest.mark.parametrize("mode", ["allow", "BLOCK", "", "age_restricted"])
async def test_unknown_nsfw_mode_is_refused_and_changes_nothing(store: Store, db_path: Path, mode: str) -> None:
    with pytest.raises(StoreInputError) as caught:
        await store.set_nsfw_mode(10, mode, actor_id=7)

    # The schema's CHECK refuses it; the sentence users see, naming the modes, comes from
    # bot.policy.nsfw, which owns them (tests/test_policy_nsfw.py).
    assert f"`{mode}` is not an NSFW mode" in str(caught.value)
    assert table(db_path, "guild_settings") == []
    assert table(db_path, "audit_log") == []


async def test_filter_terms_are_added_listed_and_removed_with_audit(store: Store, clock: FakeClock) -> None:
    await store.add_filter_term(10, "clown", actor_id=7)
    clock.now += 1
    await store.add_filter_term(10, "bare feet", actor_id=8)
    await store.add_filter_term(11, "spider", actor_id=8)
    assert await store.filter_terms(10) == ["bare feet", "clown"]

    clock.now += 1
    entry = await store.remove_filter_term(10, "clown", actor_id=9)

    assert await store.filter_terms(10) == ["bare feet"]
    assert await store.filter_terms(11) == ["spider"]
    assert (entry.actor_id, entry.action, entry.before, entry.after, entry.at) == (
        9,
        "filter_term_removed",
        "clown",
        None,
        T0 + 2,
    )
    assert [(e.action, e.after) for e in await store.audit_log(10)][1:] == [
        ("filter_term_added", "bare feet"),
        ("filter_term_added", "clown"),
    ]


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("x" * 65, "at most 64 characters"),
        ("clown", "`clown` is already on this server's filter list."),
    ],
)
async def test_bad_terms_are_refused_and_change_nothing(store: Store, db_path: Path, term: str, message: str) -> None:
    await store.add_filter_term(10, "clown", actor_id=7)
    before = (table(db_path, "filter_terms"), table(db_path, "audit_log"))

    with pytest.raises(StoreInputError, match=message):
        await store.add_filter_term(10, term, actor_id=7)

    assert (table(db_path, "filter_terms"), table(db_path, "audit_log")) == before


async def test_removing_a_missing_term_is_refused(store: Store, db_path: Path) -> None:
    with pytest.raises(StoreInputError, match=r"^`clown` is not on this server's filter list\.$"):
        await store.remove_filter_term(10, "clown", actor_id=7)
    assert table(db_path, "audit_log") == []
