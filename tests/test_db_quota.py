"""Quota ledger on a real SQLite file: the admission race, refunds, the rolling window, limits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.jobs.recipe import Recipe
from db import DAY_S, NewJob, QuotaExhausted, Store, StoreInputError
from tests.helpers import T0, FakeClock
from tests.recipes import a_new_job


def new_job(*, user_id: int = 1, guild_id: int | None = 10, cost: int = 1, images: int = 4) -> NewJob[Recipe]:
    return a_new_job(user_id=user_id, guild_id=guild_id, cost=cost, seeds=tuple(range(images)))


def ledger_rows(path: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM ledger ORDER BY id").fetchall()
    conn.close()
    return rows


def count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    (value,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    conn.close()
    return value


# ---------------------------------------------------------------------- the race


async def _admit(store: Store, job: NewJob, limit: int) -> bool:
    try:
        await store.admit_job(job, limit=limit)
    except QuotaExhausted:
        return False
    return True


async def test_fifty_concurrent_admissions_on_one_connection_admit_exactly_ten(store: Store, db_path: Path) -> None:
    results = await asyncio.gather(*(_admit(store, new_job(cost=2), limit=20) for _ in range(50)))

    assert results.count(True) == 10
    assert (await store.usage(10, 1)).used == 20
    rows = ledger_rows(db_path)
    assert len(rows) == 10
    assert sum(row["credits"] for row in rows) == 20
    assert count(db_path, "jobs") == 10


async def test_fifty_concurrent_admissions_over_separate_connections_admit_exactly_ten(
    db_path: Path, clock: FakeClock
) -> None:
    # Ten connections with five calls each: every call races calls on other connections (SQLite's
    # write lock) and on its own (the store's asyncio lock). Fifty connections prove the same but
    # spend seconds in SQLite's busy-wait back-off.
    stores = [await Store.open(db_path, clock=clock, recipe=Recipe) for _ in range(10)]
    try:
        results = await asyncio.gather(
            *(_admit(store, new_job(cost=1), limit=10) for store in stores for _ in range(5))
        )
    finally:
        for store in stores:
            await store.close()

    assert results.count(True) == 10
    rows = ledger_rows(db_path)
    assert [row["kind"] for row in rows] == ["charge"] * 10
    assert sum(row["credits"] for row in rows) == 10
    assert count(db_path, "jobs") == 10


async def test_exhausted_quota_says_how_much_and_when(store: Store, clock: FakeClock, db_path: Path) -> None:
    await store.admit_job(new_job(cost=4), limit=10)
    clock.now += 60
    await store.admit_job(new_job(cost=4), limit=10)

    with pytest.raises(QuotaExhausted) as caught:
        await store.admit_job(new_job(cost=4), limit=10)

    assert (caught.value.used, caught.value.limit, caught.value.cost) == (8, 10, 4)
    assert caught.value.next_free_at == T0 + DAY_S
    assert count(db_path, "jobs") == 2  # the rejected job left no row
    assert len(ledger_rows(db_path)) == 2


async def test_quotas_are_per_guild_and_dms_count_as_guild_zero(store: Store, db_path: Path) -> None:
    await store.admit_job(new_job(guild_id=10, cost=3), limit=3)
    await store.admit_job(new_job(guild_id=11, cost=3), limit=3)  # another guild: its own window
    dm_job = await store.admit_job(new_job(guild_id=None, cost=2), limit=3)

    assert dm_job.guild_id is None
    assert (await store.usage(None, 1)).used == 2
    assert (await store.usage(0, 1)).used == 2
    assert [row["guild_id"] for row in ledger_rows(db_path)] == [10, 11, 0]


# ---------------------------------------------------------------------- refunds


async def test_refunds_for_failed_cancelled_and_withheld_reduce_usage(store: Store, db_path: Path) -> None:
    failed = await store.admit_job(new_job(cost=4), limit=100)
    cancelled = await store.admit_job(new_job(cost=4), limit=100)
    partly_withheld = await store.admit_job(new_job(cost=4), limit=100)
    assert (await store.usage(10, 1)).used == 12

    await store.mark_failed(failed.id, "CUDA out of memory")
    assert await store.refund(failed.id, 4, "failed") == 4
    await store.mark_cancelled(cancelled.id)
    assert await store.refund(cancelled.id, 4, "cancelled") == 4
    assert await store.refund(partly_withheld.id, 1, "1 image withheld") == 1

    assert (await store.usage(10, 1)).used == 3
    rows = ledger_rows(db_path)
    refunds = [(row["job_id"], row["credits"], row["reason"]) for row in rows if row["kind"] == "refund"]
    assert refunds == [
        (failed.id, -4, "failed"),
        (cancelled.id, -4, "cancelled"),
        (partly_withheld.id, -1, "1 image withheld"),
    ]
    job = await store.get_job(partly_withheld.id)
    assert job is not None and (job.charged, job.refunded) == (4, 1)


async def test_refunds_never_exceed_the_charge(store: Store, db_path: Path) -> None:
    job = await store.admit_job(new_job(cost=4), limit=100)

    assert await store.refund(job.id, 3, "withheld") == 3
    assert await store.refund(job.id, 3, "failed") == 1  # clamped to what is left
    assert await store.refund(job.id, 3, "failed again") == 0

    assert (await store.usage(10, 1)).used == 0
    assert sum(row["credits"] for row in ledger_rows(db_path)) == 0
    record = await store.get_job(job.id)
    assert record is not None and (record.charged, record.refunded) == (4, 4)


async def test_refund_frees_room_for_a_new_admission(store: Store) -> None:
    job = await store.admit_job(new_job(cost=4), limit=4)
    with pytest.raises(QuotaExhausted):
        await store.admit_job(new_job(cost=4), limit=4)

    await store.refund(job.id, 4, "failed")

    assert (await store.admit_job(new_job(cost=4), limit=4)).charged == 4


# ---------------------------------------------------------------------- the rolling window


async def test_rolling_window_expiry_with_an_injected_clock(store: Store, clock: FakeClock) -> None:
    await store.admit_job(new_job(cost=4), limit=10)  # at T0
    clock.now = T0 + 3600
    await store.admit_job(new_job(cost=5), limit=10)  # at T0 + 1h

    clock.now = T0 + DAY_S - 1
    usage = await store.usage(10, 1)
    assert (usage.used, usage.next_free_at, usage.next_free_credits) == (9, T0 + DAY_S, 4)

    clock.now = T0 + DAY_S  # the first charge has just left the window
    usage = await store.usage(10, 1)
    assert (usage.used, usage.next_free_at, usage.next_free_credits) == (5, T0 + 3600 + DAY_S, 5)
    await store.admit_job(new_job(cost=5), limit=10)

    clock.now = T0 + 3600 + 2 * DAY_S
    usage = await store.usage(10, 1)
    assert (usage.used, usage.next_free_at, usage.next_free_credits) == (0, None, 0)


async def test_refunded_charge_does_not_delay_next_free(store: Store, clock: FakeClock) -> None:
    first = await store.admit_job(new_job(cost=4), limit=10)
    clock.now = T0 + 100
    await store.admit_job(new_job(cost=2), limit=10)
    await store.refund(first.id, 4, "failed")

    usage = await store.usage(10, 1)
    assert (usage.used, usage.next_free_at, usage.next_free_credits) == (2, T0 + 100 + DAY_S, 2)


async def test_refund_after_the_charge_expired_does_not_go_negative(store: Store, clock: FakeClock) -> None:
    job = await store.admit_job(new_job(cost=4), limit=10)
    clock.now = T0 + DAY_S + 1
    await store.admit_job(new_job(cost=3), limit=10)

    await store.refund(job.id, 4, "failed late")

    assert (await store.usage(10, 1)).used == 3


async def test_custom_window_length(store: Store, clock: FakeClock) -> None:
    await store.admit_job(new_job(cost=4), limit=4, window_s=60)
    clock.now = T0 + 60
    await store.admit_job(new_job(cost=4), limit=4, window_s=60)
    assert (await store.usage(10, 1, window_s=60)).used == 4


# ---------------------------------------------------------------------- reset


async def test_reset_usage_writes_compensating_rows_and_an_audit_entry(
    store: Store, clock: FakeClock, db_path: Path
) -> None:
    first = await store.admit_job(new_job(cost=4), limit=10)
    await store.refund(first.id, 1, "withheld")
    await store.admit_job(new_job(cost=5), limit=10)
    clock.now += 10

    entry = await store.reset_usage(10, 1, actor_id=99)

    assert (await store.usage(10, 1)).used == 0
    rows = ledger_rows(db_path)
    assert [row["kind"] for row in rows] == ["charge", "refund", "charge", "reset", "reset"]
    assert [row["credits"] for row in rows[3:]] == [-3, -5]
    assert all(row["actor_id"] == 99 for row in rows[3:])
    assert (entry.action, entry.target, entry.before, entry.after, entry.actor_id) == (
        "usage_reset",
        "user:1",
        "8",
        "0",
        99,
    )
    # A refund after the reset has nothing left to give back.
    assert await store.refund(first.id, 3, "failed") == 0
    assert (await store.usage(10, 1)).used == 0


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("user_override", "role_overrides", "guild_daily", "member_roles", "expected"),
    [
        (None, {}, None, [], 20),  # nothing set: the global default
        (None, {}, 40, [], 40),  # the guild's default beats the global one
        (None, {100: 5}, 40, [100], 5),  # a role override beats the guild default, even when lower
        (None, {100: 5, 200: 70}, 40, [100, 200], 70),  # the most generous of the member's roles
        (None, {100: 5, 200: 70}, 40, [100], 5),  # roles the member lacks do not count
        (None, {300: 70}, None, [100], 20),  # nor do they count when no role matches
        (3, {100: 5, 200: 70}, 40, [100, 200], 3),  # a user override wins, even when lower
        (0, {}, 40, [], 0),  # a user override of 0 is a real limit, not "unset"
        (None, {100: 0}, 40, [100], 0),
    ],
)
async def test_limit_precedence(
    store: Store,
    user_override: int | None,
    role_overrides: dict[int, int],
    guild_daily: int | None,
    member_roles: list[int],
    expected: int,
) -> None:
    if user_override is not None:
        await store.set_quota_override(10, user_id=1, credits=user_override, actor_id=99)
    for role_id, credits in role_overrides.items():
        await store.set_quota_override(10, role_id=role_id, credits=credits, actor_id=99)
    if guild_daily is not None:
        await store.set_guild_daily_credits(10, guild_daily, actor_id=99)

    assert await store.quota_limit(10, 1, member_roles, default=20) == expected


async def test_overrides_belong_to_one_guild(store: Store) -> None:
    await store.set_quota_override(10, user_id=1, credits=50, actor_id=99)
    await store.set_guild_daily_credits(10, 30, actor_id=99)

    assert await store.quota_limit(11, 1, [], default=20) == 20
    assert await store.quota_limit(None, 1, [], default=20) == 20


async def test_setting_an_override_again_replaces_it_and_audits_both_values(store: Store) -> None:
    await store.set_quota_override(10, role_id=100, credits=5, actor_id=98)
    entry = await store.set_quota_override(10, role_id=100, credits=15, actor_id=99)

    assert (entry.action, entry.target, entry.before, entry.after, entry.actor_id) == (
        "quota_override_set",
        "role:100",
        "5",
        "15",
        99,
    )
    assert [(o.role_id, o.credits, o.set_by) for o in await store.quota_overrides(10)] == [(100, 15, 99)]


async def test_clearing_an_override_falls_back(store: Store) -> None:
    await store.set_quota_override(10, user_id=1, credits=50, actor_id=99)
    entry = await store.clear_quota_override(10, user_id=1, actor_id=98)

    assert (entry.action, entry.target, entry.before, entry.after) == ("quota_override_cleared", "user:1", "50", None)
    assert await store.quota_limit(10, 1, [], default=20) == 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user_id": 1, "credits": -1},
        {"user_id": 1, "credits": 1_000_001},
        {"user_id": 1, "credits": True},
        {"role_id": 100, "credits": 10**12},
        {"credits": 10},  # neither a user nor a role
        {"user_id": 1, "role_id": 100, "credits": 10},  # both
    ],
)
async def test_bad_quota_overrides_change_nothing(store: Store, db_path: Path, kwargs: dict[str, int]) -> None:
    await store.set_quota_override(10, user_id=1, credits=50, actor_id=99)

    with pytest.raises(StoreInputError) as caught:
        await store.set_quota_override(10, actor_id=99, **kwargs)

    assert str(caught.value).endswith(".")
    assert [(o.user_id, o.credits) for o in await store.quota_overrides(10)] == [(1, 50)]
    assert len(await store.audit_log(10)) == 1


async def test_clearing_a_missing_override_is_refused(store: Store) -> None:
    with pytest.raises(StoreInputError, match="has no quota override"):
        await store.clear_quota_override(10, role_id=100, actor_id=99)
    assert await store.audit_log(10) == []


@pytest.mark.parametrize("credits", [-5, 1_000_001])
async def test_bad_guild_daily_credits_change_nothing(store: Store, credits: int) -> None:
    await store.set_guild_daily_credits(10, 30, actor_id=99)

    with pytest.raises(StoreInputError):
        await store.set_guild_daily_credits(10, credits, actor_id=99)

    assert (await store.guild_settings(10)).daily_credits == 30
    assert len(await store.audit_log(10)) == 1
