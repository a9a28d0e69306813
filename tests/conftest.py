"""Shared fixtures: one tiny model per test session, built locally, never downloaded."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bot.jobs.recipe import Recipe
from db.store import Store
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from tests.helpers import FakeClock

# The Discord test modules' shared helpers assert too: rewrite them as pytest rewrites a test module.
pytest.register_assert_rewrite("tests.discord_bot_helpers")


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_engine(model_cache_dir: Path) -> Iterator[DiffusionEngine]:
    """A CPU engine with ``builtin:tiny`` resident, shared by every test that generates."""
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir))
    engine.load(TINY_MODEL_ID)
    yield engine


pytest_plugins = ["tests.fakediscord.fixtures"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    """A real store on a temporary file, migrated, with a clock the test moves."""
    store = await Store.open(db_path, clock=clock, recipe=Recipe)
    yield store
    await store.close()
