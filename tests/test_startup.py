"""Start-up as the owner of a fresh clone meets it: ``python -m bot`` as a real process.

Every failure the owner can fix (a refused token, Discord out of reach, a bad
``.env`` line, an unusable database) ends start-up with one sentence on stderr,
exit code 2 and no traceback; a normal start prints nothing the bot cannot act on,
and no log line, even at DEBUG, carries a secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from bot.logs import SecretRedactionFilter
from models.tiny import TINY_MODEL_ID
from tests.fakediscord import FakeDiscord
from tests.fakediscord.fixtures import serving_fake_discord
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

ROOT = Path(__file__).resolve().parent.parent
# Generous: CI is a busy 2-core machine, and each process imports torch and builds the model.
PROCESS_TIMEOUT_S = 240

# Settings a test process must not inherit from the machine running the tests.
_OWNER_SETTINGS = (
    "DISCORD_TOKEN",
    "SD_MODEL",
    "SD_EXTRA_MODELS",
    "DATABASE_PATH",
    "IMAGES_DIR",
    "MODEL_CACHE_DIR",
    "DISCORD_API_URL",
    "DISCORD_GATEWAY_URL",
    "LOG_LEVEL",
)


def bot_env(tmp_path: Path, model_cache_dir: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _OWNER_SETTINGS}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "SD_MODEL": TINY_MODEL_ID,
        "DEVICE": "cpu",
        "DATABASE_PATH": str(tmp_path / "bot.sqlite3"),
        "IMAGES_DIR": str(tmp_path / "images"),
        "MODEL_CACHE_DIR": str(model_cache_dir),
        **settings,
    }


async def run_bot_process(cwd: Path, env: Mapping[str, str], *args: str) -> tuple[int, str]:
    """``python -m bot ARGS`` to its end, without blocking the loop the fake Discord runs on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def assert_one_sentence(returncode: int, stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [expected], stderr


# -- Discord refuses the token, or cannot be reached ---------------------------------------------


async def test_a_token_discord_refuses_is_one_sentence_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_cache_dir: Path
) -> None:
    async with serving_fake_discord(monkeypatch, bot_token="the-right-token") as fake:
        env = bot_env(
            tmp_path,
            model_cache_dir,
            DISCORD_TOKEN="a-wrong-token-456",
            DISCORD_API_URL=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            LOG_LEVEL="WARNING",  # so that stderr holds nothing but warnings and the sentence
        )
        returncode, stderr = await run_bot_process(tmp_path, env)
        assert [(call.method, call.path, call.status) for call in fake.calls] == [("GET", "/users/@me", 401)]
    assert_one_sentence(
        returncode,
        stderr,
        "error: Discord refused the token in DISCORD_TOKEN; copy the bot token again from the Developer Portal "
        "(https://discord.com/developers/applications, your application > Bot > Reset Token).",
    )
    assert "a-wrong-token-456" not in stderr


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_discord_out_of_reach_is_one_sentence_and_exit_2(
    tmp_path: Path, model_cache_dir: Path, closed_port: int
) -> None:
    api_url = f"http://127.0.0.1:{closed_port}/api/v10"
    env = bot_env(
        tmp_path,
        model_cache_dir,
        DISCORD_TOKEN="a-token",
        DISCORD_API_URL=api_url,
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{closed_port}/",
        LOG_LEVEL="WARNING",
    )
    returncode, stderr = await run_bot_process(tmp_path, env)
    assert_one_sentence(
        returncode,
        stderr,
        f"error: cannot reach Discord at {api_url} (Connection refused); check the network or DISCORD_API_URL.",
    )


# -- a .env line that does not parse -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_file", "line"),
    [
        ("# Latentcord\n\nDISCORD_TOKEN=x\n\nSD_MODEL builtin:tiny\nDEVICE=cpu\n", 5),
        ('SD_MODEL=builtin:tiny\nIMAGES_DIR="data/images\nDEVICE=cpu\n', 2),
    ],
    ids=["missing-equals", "unclosed-quote"],
)
async def test_a_env_line_that_does_not_parse_stops_start_up_naming_the_line(
    tmp_path: Path, model_cache_dir: Path, env_file: str, line: int
) -> None:
    (tmp_path / ".env").write_text(env_file)
    env = bot_env(tmp_path, model_cache_dir)
    del env["SD_MODEL"]  # as in a fresh clone: the model comes from .env
    returncode, stderr = await run_bot_process(tmp_path, env, "imagine", "a fox", "--out", "fox.png")
    assert_one_sentence(
        returncode,
        stderr,
        f"error: .env line {line} is not NAME=value (a missing '=' or an unclosed quote?): "
        "fix the line or comment it out with #.",
    )
    assert not (tmp_path / "bot.sqlite3").exists()


# -- a database that cannot be written ----------------------------------------------------------


def _unwritable_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder / "bot.sqlite3"
    pytest.skip("this user writes in read-only folders (root)")


@pytest.mark.parametrize("where", ["under-a-file", "is-a-folder", "read-only-folder"])
async def test_an_unusable_database_is_one_sentence_without_a_traceback(
    tmp_path: Path, model_cache_dir: Path, where: str
) -> None:
    """After the sentence, nothing may print: the store's thread is gone before the event loop closes."""
    match where:
        case "under-a-file":
            (tmp_path / "a-file").write_text("")
            database = tmp_path / "a-file" / "bot.sqlite3"
            expected = "Cannot create the folder for the database"
        case "is-a-folder":
            database = tmp_path / "a-folder"
            database.mkdir()
            expected = "Cannot open the database"
        case _:
            database = _unwritable_folder(tmp_path)
            expected = "Cannot open the database"
    env = bot_env(tmp_path, model_cache_dir, DATABASE_PATH=str(database))
    try:
        returncode, stderr = await run_bot_process(tmp_path, env, "imagine", "a fox", "--out", "fox.png")
    finally:
        database.parent.chmod(0o755)
    assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr
    assert returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}") and str(database) in lines[0], stderr


# -- what a normal start prints -------------------------------------------------------------------


async def test_imagine_prints_no_noise_and_logs_above_the_progress_bar(tmp_path: Path, model_cache_dir: Path) -> None:
    env = bot_env(tmp_path, model_cache_dir)
    returncode, stderr = await run_bot_process(
        tmp_path, env, "imagine", "a fox", "--out", "fox.png", "--count", "1", "--steps", "2"
    )
    assert returncode == 0, stderr
    for noise in ("torchvision", "PyNaCl", "davey", "Warning", "Traceback"):
        assert noise not in stderr, stderr
    # tqdm redraws its bar after "\r": a log line must start at the beginning of the line, not after the bar.
    loaded = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n") if "loaded builtin:tiny" in line]
    assert len(loaded) == 1, stderr
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO models\.engine: loaded builtin:tiny", loaded[0]), stderr


async def test_a_hub_model_prints_no_deprecation_warning(tmp_path: Path, model_cache_dir: Path) -> None:
    """Offline, a hub id fails at once, but only after the code that warned about local_dir_use_symlinks."""
    env = bot_env(tmp_path, model_cache_dir, SD_MODEL="nobody-here/no-such-model", HF_HUB_OFFLINE="1")
    returncode, stderr = await run_bot_process(tmp_path, env, "imagine", "a fox", "--out", "fox.png")
    assert returncode == 2, stderr
    assert "local_dir_use_symlinks" not in stderr and "Warning:" not in stderr, stderr
    assert stderr.rstrip().splitlines()[-1].startswith("error: Could not load nobody-here/no-such-model"), stderr


def test_a_hub_warning_is_printed_once(tmp_path: Path) -> None:
    """huggingface_hub has a handler of its own; with ours as well, each download retry printed twice."""
    script = (
        "import logging\n"
        "from bot.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Retrying in 1s") == 1, result.stderr
    assert "WARNING huggingface_hub.utils._http: Retrying in 1s" in result.stderr


# -- secrets in the log --------------------------------------------------------------------------


def _redacted(msg: str, *args: object, secrets: tuple[str, ...] = ()) -> str:
    record = logging.LogRecord("discord.http", logging.DEBUG, __file__, 1, msg, args or None, None)
    assert SecretRedactionFilter(secrets).filter(record)
    return record.getMessage()


def test_redaction_covers_discord_py_debug_lines() -> None:
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OnNlY3JldA-_x.y"
    # discord/http.py and discord/webhook/async_.py, with their format strings and arguments.
    lines = [
        _redacted(
            "%s %s with %s has returned %s",
            "POST",
            f"https://discord.com/api/v10/interactions/1234567890123/{token}/callback?with_response=true",
            None,
            204,
        ),
        _redacted(
            "Webhook ID %s with %s %s has returned status code %s",
            1111,
            "PATCH",
            f"https://discord.com/api/v10/webhooks/1111/{token}/messages/@original",
            200,
        ),
        _redacted(
            "For Shard ID %s: WebSocket Event: %s",
            None,
            {"t": "INTERACTION_CREATE", "d": {"id": "1234567890123", "token": token, "type": 2}},
        ),
        _redacted(f'{{"type": 2, "token": "{token}", "application_id": "1111"}}'),
    ]
    for line in lines:
        assert token not in line and "<redacted>" in line, line
    assert "/interactions/1234567890123/<redacted>/callback?with_response=true" in lines[0]
    assert "/webhooks/1111/<redacted>/messages/@original" in lines[1]
    # What is not a secret stays readable: routes, ids, other fields.
    assert _redacted(
        "%s has found its initial rate limit bucket hash (%s).", "POST /webhooks/{webhook_id}/{webhook_token}", "abc"
    ) == ("POST /webhooks/{webhook_id}/{webhook_token} has found its initial rate limit bucket hash (abc).")
    assert _redacted("GET %s has received %s", "/channels/42/messages", {"id": "7"}) == (
        "GET /channels/42/messages has received {'id': '7'}"
    )


def test_redaction_covers_the_bot_token_and_tracebacks() -> None:
    assert (
        _redacted("connecting with %s", "MTk4.bot-token", secrets=("MTk4.bot-token",)) == "connecting with <redacted>"
    )
    try:
        raise RuntimeError("POST https://discord.com/api/v10/interactions/99/secret-ix-token/callback failed")
    except RuntimeError:
        record = logging.LogRecord("bot.app", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert SecretRedactionFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "secret-ix-token" not in text and "/interactions/99/<redacted>/callback" in text


@pytest.fixture
async def debug_bot(
    fake_discord: FakeDiscord, world: GuildSetup, tmp_path: Path, model_cache_dir: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """``python -m bot`` at LOG_LEVEL=DEBUG against the fake; its log goes to a file (DEBUG would fill a pipe)."""
    env = bot_env(
        tmp_path,
        model_cache_dir,
        DISCORD_TOKEN="a-secret-bot-token-789",
        DISCORD_API_URL=fake_discord.api_base,
        DISCORD_GATEWAY_URL=fake_discord.gateway_url,
        LOG_LEVEL="DEBUG",
    )
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
    try:
        await fake_discord.wait_until(lambda: fake_discord.find_command("imagine"), timeout=120, what="commands synced")
        await fake_discord.wait_for_gateway(timeout=60)
        yield process, log_path
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_debug_log_holds_no_interaction_token_and_a_dropped_connection_is_resumed(
    fake_discord: FakeDiscord, world: GuildSetup, debug_bot: tuple[asyncio.subprocess.Process, Path]
) -> None:
    process, log_path = debug_bot
    # 1. One /imagine, answered through the interaction token, and its grid.
    first = await fake_discord.run_slash(
        "imagine", {"prompt": "a red fox", "steps": 2, "count": 1}, user=world.member, channel=world.text_channel
    )
    await first.wait_for_response(timeout=10)
    await first.wait_for_message(has_grid, timeout=120)
    # 2. Discord drops the connection (as when it restarts): the bot resumes and keeps serving.
    session = fake_discord.gateway.active()
    assert session is not None
    await fake_discord.gateway.close_all(code=1001)
    await fake_discord.wait_until(lambda: 6 in session.received_ops, timeout=60, what="a RESUME")
    second = await fake_discord.run_slash(
        "imagine", {"prompt": "a blue fox", "steps": 2, "count": 1}, user=world.member, channel=world.text_channel
    )
    await second.wait_for_response(timeout=10)
    await second.wait_for_message(has_grid, timeout=120)
    # 3. A clean stop, and a log with every secret redacted.
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 120) == 0
    log = log_path.read_text()
    assert "/interactions/" in log and "/webhooks/" in log, "discord.py's debug lines are missing"
    for secret in (first.token, second.token, "a-secret-bot-token-789"):
        assert secret not in log
    assert "<redacted>" in log
