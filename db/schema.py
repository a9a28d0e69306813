"""Numbered SQL migrations, applied forward in one transaction.

The schema version lives in ``PRAGMA user_version`` (in the file's header), so a
database says by itself which migrations it has seen. Migration ``NNNN_*.sql``
takes the database from version ``NNNN - 1`` to ``NNNN``; they are applied in
order, all pending ones inside a single ``BEGIN IMMEDIATE`` transaction, so a
crash or an error half-way leaves the file exactly as it was.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """Read the migration files, refusing gaps and duplicates.

    A gap would mean a database could be stamped with a version whose schema it
    never got, so it is a packaging error worth failing loudly on.
    """
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"Migration file {path} is not named NNNN_description.sql.")
        migrations.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"Migrations in {directory} must be numbered 1, 2, 3... without gaps; found {versions}.")
    return tuple(migrations)


def latest_version(migrations: tuple[Migration, ...]) -> int:
    return migrations[-1].version if migrations else 0


def split_statements(script: str) -> list[str]:
    """Split a script into statements, respecting semicolons inside strings and triggers.

    ``executescript`` would be simpler but it commits any open transaction first,
    which would break "all pending migrations in one transaction".
    ``sqlite3.complete_statement`` knows SQLite's own idea of where a statement ends.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    # The loop appends a ';' after the last piece too, so anything left over is an
    # unfinished statement (an unclosed trigger or string): a broken migration file.
    if _has_code(buffer):
        raise RuntimeError(f"Migration ends in an unfinished statement: {buffer.strip()[:80]!r}")
    return statements


def _has_code(text: str) -> bool:
    without_comments = re.sub(r"--[^\n]*", "", text)
    return bool(without_comments.replace(";", "").strip())


def read_user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def apply_migrations(conn: sqlite3.Connection, migrations: tuple[Migration, ...]) -> int:
    """Bring the database to the latest version; return the version it was at.

    The version is read again inside the write transaction, so two processes
    starting together cannot both apply the same migration. The caller has
    already refused databases newer than ``migrations`` know, and turned foreign
    keys off (a migration may rebuild a table); every reference is checked here
    before the transaction commits.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = read_user_version(conn)
        for migration in migrations:
            if migration.version <= found:
                continue
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            # PRAGMA takes no parameters; the version is an int we produced.
            conn.execute(f"PRAGMA user_version = {migration.version:d}")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise sqlite3.IntegrityError(f"the migrations would leave {len(broken)} broken references: {broken[:3]}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
