"""Migrations on real SQLite files: from nothing, from version 1, and the files we must refuse."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.jobs.recipe import Recipe
from db import Store, StoreError
from db.schema import MIGRATIONS_DIR, Migration, apply_migrations, latest_version, load_migrations, split_statements

LATEST = latest_version(load_migrations())


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    return conn


def _files_beside(path: Path) -> list[str]:
    return sorted(child.name for child in path.parent.iterdir())


def _v1_database(path: Path) -> None:
    """A database exactly as version 1 of Latentcord left it, with a row in every table."""
    conn = _raw(path)
    conn.executescript((MIGRATIONS_DIR / "0001_init.sql").read_text())
    conn.executescript(
        """
        PRAGMA user_version = 1;
        INSERT INTO guild_settings (guild_id, nsfw_mode, daily_credits, log_channel_id, updated_at)
            VALUES (10, 'age-restricted', 40, 555, 100.0);
        INSERT INTO filter_terms (guild_id, term, added_by, added_at) VALUES (10, 'clown', 7, 100.0);
        INSERT INTO quota_overrides (guild_id, user_id, credits, set_by, set_at) VALUES (10, 1, 99, 7, 100.0);
        INSERT INTO jobs (kind, guild_id, channel_id, user_id, prompt, negative_prompt, model, width, height,
                          steps, guidance, seeds, cost, status, created_at, image_paths, withheld)
            VALUES ('imagine', 10, 20, 1, 'a lighthouse', 'blurry', 'sd15', 512, 512, 25, 7.5,
                    '[1, 2, 3, 4]', 4, 'done', 100.0, '["a.png"]', '[2]');
        INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, at, recorded_at)
            VALUES (10, 1, 'charge', 4, 1, 100.0, 100.0);
        INSERT INTO audit_log (guild_id, actor_id, action, before, after, at)
            VALUES (10, 7, 'nsfw_mode', 'block', 'age-restricted', 100.0);
        """
    )
    conn.commit()
    conn.close()


async def test_empty_file_migrates_to_latest(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bot.sqlite3"
    store = await Store.open(path, recipe=Recipe)
    try:
        # Every numbered file in db/migrations/ was applied, the last one included.
        assert await store.schema_version() == LATEST == len(list(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")))
    finally:
        await store.close()

    conn = _raw(path)
    tables = {row["name"] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = {row["name"] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    job_columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert {"guild_settings", "filter_terms", "quota_overrides", "ledger", "jobs", "audit_log"} <= tables
    assert "ledger_window" in indexes  # from 0002
    assert {"timings", "scheduler", "nsfw_allowed"} <= job_columns  # from 0002
    assert journal_mode == "wal"


async def test_version_1_database_migrates_with_rows_intact(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    _v1_database(path)

    store = await Store.open(path, clock=lambda: 200.0, recipe=Recipe)
    try:
        assert await store.schema_version() == LATEST
        settings = await store.guild_settings(10)
        assert (settings.nsfw_mode, settings.daily_credits, settings.log_channel_id) == ("age-restricted", 40, 555)
        assert await store.filter_terms(10) == ["clown"]
        assert await store.quota_limit(10, 1, [], default=20) == 99
        job = await store.get_job(1)
        assert job is not None
        assert job.recipe.prompt == "a lighthouse"
        assert job.recipe.seeds == (1, 2, 3, 4)
        assert job.image_paths == ("a.png",)
        assert job.withheld == (2,)
        # The columns 0002 added, with their defaults: the safe NSFW answer (classify and withhold)
        # for a job whose decision was never recorded; 0004 completed the recipe with the scheduler
        # such jobs ran with, and strength 0 for text-to-image.
        assert (job.timings, job.nsfw_allowed) == ({}, False)
        assert (job.recipe.scheduler, job.recipe.strength) == ("EulerAncestralDiscreteScheduler", 0.0)
        assert job.recipe.kind == "imagine"
        assert (job.charged, job.refunded) == (4, 0)
        assert (await store.usage(10, 1)).used == 4
        [entry] = await store.audit_log(10)
        assert (entry.actor_id, entry.before, entry.after) == (7, "block", "age-restricted")
        # 0006 rebuilt the jobs table: the old job kept its row, id and charge, and has no source or mask.
        assert (job.recipe.source, job.recipe.mask) == (None, None)
    finally:
        await store.close()
    conn = _raw(path)
    try:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The rebuilt table takes the new kinds, still refuses unknown ones, and still checks its references.
        conn.execute("PRAGMA foreign_keys = ON")
        insert = (
            "INSERT INTO jobs (kind, parent_job_id, user_id, prompt, model, width, height, steps, guidance, seeds,"
            " cost, created_at, mask) VALUES (?, ?, 1, 'p', 'm', 64, 64, 4, 7, '[1]', 1, 1.0, 'zoom:2')"
        )
        conn.execute(insert, ("zoom", 1))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("sketch", 1))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("pan", 999))  # no job 999
        assert {row["name"] for row in conn.execute("PRAGMA index_list(jobs)")} >= {
            "jobs_unfinished",
            "jobs_user",
            "jobs_token",
            "jobs_pending_delivery",
        }
    finally:
        conn.close()


async def test_member_preferences_start_at_the_defaults_and_toggle(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.sqlite3", recipe=Recipe)
    try:
        assert (await store.member_preferences(5)).remix is False
        assert (await store.toggle_remix(5)).remix is True
        assert (await store.member_preferences(5)).remix is True
        assert (await store.member_preferences(6)).remix is False  # one member's switch only
        assert (await store.toggle_remix(5)).remix is False
    finally:
        await store.close()


async def test_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = await Store.open(path, recipe=Recipe)
    await store.add_filter_term(1, "clown", actor_id=2)
    await store.close()

    store = await Store.open(path, recipe=Recipe)
    try:
        assert await store.schema_version() == LATEST
        assert await store.filter_terms(1) == ["clown"]
    finally:
        await store.close()


async def test_newer_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE mystery (x); INSERT INTO mystery VALUES (1); PRAGMA user_version = 99;")
    conn.commit()
    conn.close()
    before = path.read_bytes()

    with pytest.raises(StoreError) as caught:
        await Store.open(path, recipe=Recipe)

    message = str(caught.value)
    assert str(path) in message
    assert f"newer Latentcord (schema 99, this one knows {LATEST})" in message
    assert path.read_bytes() == before
    assert _files_beside(path) == [path.name]  # no -wal, -shm or -journal either


async def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    garbage = b"these are my holiday photos, not a database\n" * 200
    path.write_bytes(garbage)

    with pytest.raises(StoreError) as caught:
        await Store.open(path, recipe=Recipe)

    assert str(path) in str(caught.value)
    assert "not a usable SQLite database" in str(caught.value)
    assert path.read_bytes() == garbage
    assert _files_beside(path) == [path.name]


async def test_unwritable_location_is_refused_with_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    path = blocker / "bot.sqlite3"

    with pytest.raises(StoreError) as caught:
        await Store.open(path, recipe=Recipe)

    assert str(path) in str(caught.value)
    assert blocker.read_text() == "a file where the database folder should be"


async def test_a_directory_instead_of_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        await Store.open(tmp_path, recipe=Recipe)
    assert str(tmp_path) in str(caught.value)


async def test_all_pending_migrations_share_one_transaction(tmp_path: Path) -> None:
    """A failure in migration 2 must also undo migration 1: nothing half-migrated is ever stamped."""
    migrations = (
        Migration(1, "0001_ok.sql", "CREATE TABLE first (x INTEGER);"),
        Migration(2, "0002_broken.sql", "CREATE TABLE second (y INTEGER); INSERT INTO missing VALUES (1);"),
    )
    path = tmp_path / "bot.sqlite3"
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            apply_migrations(conn, migrations)
        assert not conn.in_transaction
    finally:
        conn.close()

    raw = _raw(path)
    tables = [row["name"] for row in raw.execute("SELECT name FROM sqlite_master")]
    version = raw.execute("PRAGMA user_version").fetchone()[0]
    raw.close()
    assert tables == []
    assert version == 0


def test_statement_splitter_respects_strings_and_triggers() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
        -- trailing comment
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].endswith("DEFAULT 'a;b');")
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [migration.version for migration in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == LATEST
