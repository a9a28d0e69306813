"""Settings, read once at start-up from the environment and ``.env``.

Every field is typed and validated here so that a bad value stops the process with
one sentence naming the variable and what it accepts, instead of failing later in
the middle of a job. Secrets are never part of ``repr``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from bot.jobs.messages import STRING_OPTION_LIMIT
from models.captioners import DEFAULT_CAPTIONER

T = TypeVar("T")

# The default for a new install (README, "Models": the table of GPU memory and the model to pick): FLUX.2 klein
# 4B, Apache-2.0, 4 steps, and editing-friendly; it needs a 16 GB GPU, where SD 1.5 or SDXL is the pick below that.
DEFAULT_MODEL = "black-forest-labs/FLUX.2-klein-4B"
# A worker's name (WORKER_ID): it is part of a key on the Valkey or Redis server.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    discord_token: str | None = field(default=None, repr=False)
    sd_model: str = DEFAULT_MODEL
    # Further models users may pick with `model:`; the default model always comes first.
    extra_models: tuple[str, ...] = ()
    # SD_EDIT_MODEL: what /edit, the Edit button and reference images run on; None: the first edit-capable model
    # (FLUX.2 klein) among the two above (bot.jobs.service.GenerationService.edit_model).
    edit_model: str | None = None
    database_path: Path = Path("data/bot.sqlite3")
    images_dir: Path = Path("data/images")
    model_cache_dir: Path = Path("data/models")
    device: str = "auto"
    finetunes_dir: Path = Path("data/finetunes")
    lora_max_mb: int = 400
    lora_max_per_job: int = 3
    lora_cache: int = 8
    models_resident: int = 0  # MODELS_RESIDENT: models a worker keeps loaded; 0: one per 24 GiB of GPU memory
    # "off" until a GPU run shows the compiled path faster and stable; "auto": compiled where CUDA is.
    sd_compile: str = "off"
    queue_max_per_user: int = 5
    queue_max_total: int = 100
    batch_max_images: int = 8
    preview_interval_s: float = 1.5
    # A finished result is retried this long (seconds) when Discord keeps failing, then refunded.
    delivery_give_up_s: float = 600.0
    delivery_first_retry_s: float = 2.0
    prompt_max_chars: int = 1000
    daily_credits: int = 100
    variation_strength: float = 0.6
    upscale_strength: float = 0.3  # 0: U1-U4 are the upscaler alone (with UPSCALER set)
    # UPSCALER: a super-resolution net's .safetensors file (ESRGAN, Real-ESRGAN, SwinIR, HAT, SPAN... through
    # spandrel) that U1-U4 and Upscale (Subtle/Creative) enlarge with; None: a resize redrawn by img2img.
    upscaler: Path | None = None
    upscaler_tile: int = 512  # UPSCALER_TILE: the side of the tiles the upscaler runs on (0: whole images)
    captioner: str = DEFAULT_CAPTIONER  # CAPTIONER: the Florence-2 model /describe runs
    nsfw_threshold: float = 0.7
    allow_dms: bool = False
    # The bot is run commercially: a model whose licence forbids that, or whose licence is unknown, stops
    # start-up (bot/runtime/worker.py's commercial_use_refusals; the licences are models/licences.py's).
    commercial_use: bool = False
    log_level: str = "INFO"
    # Only for testing against a Discord-compatible server: the REST base (".../api/v10") and gateway URL.
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    # Gateway connections (shards); None asks Discord, and shards only when it recommends more than one.
    shard_count: int | None = None
    # Where generation runs: "processes" (worker child processes, one per GPU) or "thread" (a thread of
    # the bot's own process, as a small CPU-only install may prefer).
    workers: str = "processes"
    # -- streams transport (bot/workers/streams.py) --
    # Set: workers on any host reach the bot through this Valkey or Redis server (`python -m bot worker`),
    # and the bot starts none of its own. It may hold a password, so it stays out of repr.
    redis_url: str | None = field(default=None, repr=False)
    # The name `python -m bot worker` goes by; None: the host's name and the process id.
    worker_id: str | None = None
    # -- end streams transport --
    # METRICS_PORT: Prometheus' /metrics and the container's /healthz on this port (bot.observability); None: off.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # METRICS_HOST: the address they listen on (0.0.0.0 inside a container)
    # -- the web gallery (bot/web/) --
    # WEB_PORT: the servers' galleries on this port, signed in with Discord; None: off.
    web_port: int | None = None
    web_host: str = "127.0.0.1"  # WEB_HOST: the address it listens on (0.0.0.0 inside a container)
    # WEB_PUBLIC_URL: where members' browsers reach it (behind a reverse proxy, its https:// address); None:
    # http://localhost:<WEB_PORT>. Discord sends them back to <WEB_PUBLIC_URL>/callback after they sign in.
    web_public_url: str | None = None
    # DISCORD_CLIENT_ID: the OAuth2 client id; None: the bot's application id, which is the same for a bot's app.
    discord_client_id: str | None = None
    discord_client_secret: str | None = field(default=None, repr=False)  # DISCORD_CLIENT_SECRET, never logged
    # -- end web gallery --

    @property
    def gallery_url(self) -> str | None:
        """Where members' browsers reach the web gallery (no trailing slash); None when it is off."""
        if self.web_port is None:
            return None
        return self.web_public_url or f"http://localhost:{self.web_port}"

    @property
    def models(self) -> tuple[str, ...]:
        """Every model users may choose, the default first and without repeats (SD_EDIT_MODEL last, where set)."""
        edit = (self.edit_model,) if self.edit_model else ()
        return tuple(dict.fromkeys((self.sd_model, *self.extra_models, *edit)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) over the values in ``env_file``.

        Real environment variables win over ``.env``, as python-dotenv does by default.
        """
        values: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            values.update(read_env_file(env_file))
        values.update(os.environ if environ is None else environ)
        reader = _Reader(values)
        settings = cls(
            discord_token=reader.text("DISCORD_TOKEN", None),
            sd_model=reader.text("SD_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL,
            extra_models=reader.csv("SD_EXTRA_MODELS"),
            edit_model=reader.text("SD_EDIT_MODEL", None) or None,
            database_path=reader.path("DATABASE_PATH", Path("data/bot.sqlite3")),
            images_dir=reader.path("IMAGES_DIR", Path("data/images")),
            model_cache_dir=reader.path("MODEL_CACHE_DIR", Path("data/models")),
            device=reader.choice("DEVICE", "auto", ("auto", "cuda", "cpu")),
            sd_compile=reader.compile_mode("SD_COMPILE", "off"),
            finetunes_dir=reader.path("FINETUNES_DIR", Path("data/finetunes")),
            lora_max_mb=reader.integer("LORA_MAX_MB", 400, 1, 10_000),
            lora_max_per_job=reader.integer("LORA_MAX_PER_JOB", 3, 1, 10),
            lora_cache=reader.integer("LORA_CACHE", 8, 1, 64),
            models_resident=reader.integer("MODELS_RESIDENT", 0, 0, 16),
            queue_max_per_user=reader.integer("QUEUE_MAX_PER_USER", 5, 1, 100),
            queue_max_total=reader.integer("QUEUE_MAX_TOTAL", 100, 1, 10_000),
            batch_max_images=reader.integer("BATCH_MAX_IMAGES", 8, 1, 64),
            preview_interval_s=reader.number("PREVIEW_INTERVAL_S", 1.5, 0.0, 60.0),
            delivery_give_up_s=reader.number("DELIVERY_GIVE_UP_S", 600.0, 10.0, 86_400.0),
            delivery_first_retry_s=reader.number("DELIVERY_FIRST_RETRY_S", 2.0, 0.1, 600.0),
            prompt_max_chars=reader.integer("PROMPT_MAX_CHARS", 1000, 1, STRING_OPTION_LIMIT),
            daily_credits=reader.integer("DAILY_CREDITS", 100, 0, 1_000_000),
            variation_strength=reader.number("VARIATION_STRENGTH", 0.6, 0.05, 1.0),
            upscale_strength=reader.number("UPSCALE_STRENGTH", 0.3, 0.0, 1.0),
            upscaler=reader.optional_path("UPSCALER"),
            upscaler_tile=reader.tile("UPSCALER_TILE", 512),
            captioner=reader.text("CAPTIONER", DEFAULT_CAPTIONER) or DEFAULT_CAPTIONER,
            nsfw_threshold=reader.number("NSFW_THRESHOLD", 0.7, 0.0, 1.0),
            allow_dms=reader.boolean("ALLOW_DMS", False),
            commercial_use=reader.boolean("COMMERCIAL_USE", False),
            log_level=reader.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            discord_api_url=reader.url("DISCORD_API_URL"),
            discord_gateway_url=reader.url("DISCORD_GATEWAY_URL"),
            shard_count=reader.count("SHARD_COUNT"),
            workers=reader.choice("WORKERS", "processes", ("processes", "thread")),
            redis_url=reader.redis_url("REDIS_URL"),
            worker_id=reader.name("WORKER_ID"),
            metrics_port=reader.port("METRICS_PORT"),
            metrics_host=reader.text("METRICS_HOST", "127.0.0.1") or "127.0.0.1",
            web_port=reader.port("WEB_PORT"),
            web_host=reader.text("WEB_HOST", "127.0.0.1") or "127.0.0.1",
            web_public_url=reader.public_url("WEB_PUBLIC_URL"),
            discord_client_id=reader.snowflake("DISCORD_CLIENT_ID"),
            discord_client_secret=reader.text("DISCORD_CLIENT_SECRET", None),
        )
        _check_gallery(settings)
        return settings

    def require_token(self) -> str:
        """The Discord token, or a sentence telling the owner how to get one."""
        if not self.discord_token:
            raise SettingsError(
                "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications, "
                "copy its token (Bot > Reset Token) and put DISCORD_TOKEN=<token> in .env or the environment."
            )
        return self.discord_token


def _check_gallery(settings: Settings) -> None:
    """A gallery needs its OAuth2 client's secret to sign anyone in: say so at start, not at the first sign-in."""
    if settings.web_port is not None and not settings.discord_client_secret:
        raise SettingsError(
            "WEB_PORT is set but DISCORD_CLIENT_SECRET is not: copy the client secret from your application's "
            "OAuth2 page at https://discord.com/developers/applications (and add <WEB_PUBLIC_URL>/callback to its "
            "redirects), or leave WEB_PORT unset to turn the gallery off."
        )


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` pairs of a ``.env`` file; a line that does not parse is a ``SettingsError``.

    python-dotenv skips such a line with a logged warning, which nobody reads before
    the run has gone on without the setting (``SD_MODEL builtin:tiny`` would leave
    the hub model as the default). Its own parser marks those lines, so the file is
    checked with it first, then read by ``dotenv_values`` as before (quotes, ``export``,
    ``${VAR}`` interpolation). A name without ``=`` is allowed and sets nothing.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM (Windows editors) is not part of a name
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text: save it as UTF-8, one NAME=value per line.") from None
    except OSError as error:
        raise SettingsError(f"Cannot read {path} ({error.strerror or error}): check its permissions.") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = _first_written_line(binding.original.string, binding.original.line)
            # The line itself is not quoted: it may hold a secret (a token pasted without a name).
            raise SettingsError(
                f"{path} line {line} is not NAME=value (a missing '=' or an unclosed quote?): "
                "fix the line or comment it out with #."
            )
    return {name: value for name, value in dotenv_values(stream=io.StringIO(text)).items() if value is not None}


def _first_written_line(text: str, first_line: int) -> int:
    """python-dotenv counts blank lines before a statement as part of it; name the line with the text."""
    for offset, line in enumerate(text.splitlines()):
        if line.strip():
            return first_line + offset
    return first_line


class _Reader:
    """Parses raw strings, raising a SettingsError that names the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def _raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def _parse(self, name: str, default: T, parse: Callable[[str], T], accepts: str) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is invalid: it accepts {accepts}.") from None

    def tile(self, name: str, default: int) -> int:
        """A tile's side: 0 (whole images) or 64 to 8192 pixels, enough for a tile to keep its middle."""

        def parse(raw: str) -> int:
            value = int(raw)
            if value != 0 and not 64 <= value <= 8192:
                raise ValueError(raw)
            return value

        return self._parse(name, default, parse, "0 (whole images) or a whole number of pixels from 64 to 8192")

    def text(self, name: str, default: str | None) -> str | None:
        raw = self._raw(name)
        return default if raw is None else raw

    def url(self, name: str) -> str | None:
        def parse(raw: str) -> str:
            if not raw.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(raw)
            return raw.rstrip("/")

        return self._parse(name, None, parse, "an http(s):// or ws(s):// URL")

    def public_url(self, name: str) -> str | None:
        """A site's own address, http(s)://host[:port] (its pages link from the root, so no path); no trailing /."""

        def parse(raw: str) -> str:
            if not re.fullmatch(r"https?://[^/?#\s]+/?", raw):
                raise ValueError(raw)
            return raw.rstrip("/")

        return self._parse(
            name, None, parse, "an http:// or https:// address without a path, such as https://gallery.example.org"
        )

    def snowflake(self, name: str) -> str | None:
        def parse(raw: str) -> str:
            if not raw.isdigit() or not 15 <= len(raw) <= 21:
                raise ValueError(raw)
            return raw

        return self._parse(name, None, parse, "the application's numeric client id (Discord's OAuth2 page)")

    def redis_url(self, name: str) -> str | None:
        """A Valkey or Redis server's URL; the sentence for a bad one does not quote it (it may hold a password)."""
        raw = self._raw(name)
        if raw is None or (raw.startswith(("redis://", "rediss://", "unix://")) and not raw.endswith("://")):
            return raw
        raise SettingsError(
            f"{name} is invalid: it accepts the redis://, rediss:// or unix:// URL of a Valkey or Redis server "
            "(redis://host:6379/0, say)."
        )

    def name(self, name: str) -> str | None:
        def parse(raw: str) -> str:
            if not _NAME.fullmatch(raw):
                raise ValueError(raw)
            return raw

        return self._parse(name, None, parse, "up to 64 letters, digits, '.', '-' and '_'")

    def optional_path(self, name: str) -> Path | None:
        raw = self._raw(name)
        return Path(raw).expanduser() if raw else None

    def path(self, name: str, default: Path) -> Path:
        return self._parse(name, default, lambda raw: Path(raw).expanduser(), "a file system path")

    def csv(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name)
        return () if raw is None else tuple(part.strip() for part in raw.split(",") if part.strip())

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        def parse(raw: str) -> str:
            for option in options:
                if raw.casefold() == option.casefold():
                    return option
            raise ValueError(raw)

        return self._parse(name, default, parse, " or ".join(options))

    def compile_mode(self, name: str, default: str) -> str:
        """auto or off; the true/false of releases before ``auto`` still mean auto/off, so old .env files start."""
        legacy = {"true": "auto", "1": "auto", "yes": "auto", "on": "auto", "false": "off", "0": "off", "no": "off"}

        def parse(raw: str) -> str:
            lowered = raw.strip().lower()
            if lowered in ("auto", "off"):
                return lowered
            if lowered in legacy:
                return legacy[lowered]
            raise ValueError(raw)

        return self._parse(name, default, parse, "auto or off")

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)

        return self._parse(name, default, parse, "true or false")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if not low <= value <= high:
                raise ValueError(raw)
            return value

        return self._parse(name, default, parse, f"a whole number from {low} to {high}")

    def count(self, name: str) -> int | None:
        """A positive whole number with no upper bound, or None when unset."""

        def parse(raw: str) -> int | None:
            value = int(raw)
            if value < 1:
                raise ValueError(raw)
            return value

        return self._parse(name, None, parse, "a whole number of 1 or more")

    def port(self, name: str) -> int | None:
        """A TCP port from 1 to 65535, or None when unset."""

        def parse(raw: str) -> int | None:
            value = int(raw)
            if not 1 <= value <= 65_535:
                raise ValueError(raw)
            return value

        return self._parse(name, None, parse, "a port from 1 to 65535")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not low <= value <= high:
                raise ValueError(raw)
            return value

        return self._parse(name, default, parse, f"a number from {low:g} to {high:g}")
