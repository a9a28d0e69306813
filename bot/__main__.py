"""Entry point: ``python -m bot`` starts the Discord bot; ``python -m bot imagine`` runs one job locally."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterable

from bot.settings import DEFAULT_MODEL, Settings, SettingsError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_DESCRIPTION = """\
Latentcord: a Stable Diffusion bot for Discord.

With no command, it starts the Discord bot: it loads the model (SD_MODEL),
connects to Discord with DISCORD_TOKEN and serves /imagine until Ctrl-C or
SIGTERM."""

_SETTINGS_HELP = f"""\
settings:
  Read from the environment and from a .env file in the current folder (the
  environment wins); .env.example lists them all. The main ones:
  DISCORD_TOKEN  the bot's token from the Discord Developer Portal (required
                 to connect)
  SD_MODEL       the model: a Hugging Face id, downloaded on first use (several
                 GB; default {DEFAULT_MODEL}),
                 a diffusers folder, a .safetensors file, or builtin:tiny (built
                 locally, works offline; it draws noise)
  DATABASE_PATH  the SQLite database (default data/bot.sqlite3)
  IMAGES_DIR     generated images (default data/images)
  DEVICE         auto, cuda or cpu (default auto)
  LOG_LEVEL      DEBUG, INFO, WARNING or ERROR (default INFO)

examples:
  python -m bot
  SD_MODEL=builtin:tiny python -m bot imagine "a red fox in snow" --out fox.png"""


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' notice that image processors fall back to PIL without torchvision.

    Latentcord never uses those processors (it classifies images with its own
    model), so the notice is noise on every start.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


class _NoVoiceFilter(logging.Filter):
    """Drops discord.py's warnings that PyNaCl and davey are missing: the bot never joins a voice channel."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


class SecretRedactionFilter(logging.Filter):
    """Replaces secrets in log lines with ``<redacted>`` before any handler writes them.

    An interaction token lets whoever holds it answer as the bot for 15 minutes, and a
    webhook token for ever. discord.py's debug lines carry them in URLs
    (``/webhooks/<app>/<token>/...``, ``/interactions/<id>/<token>/callback``) and in
    the gateway events it prints (``'token': '...'``). The bot token is never logged
    on purpose; it is redacted here too should a library ever print it.
    """

    REDACTED = "<redacted>"
    _PATTERNS = (
        re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"]+"),
        re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+"""),
    )

    # A literal secret shorter than this is no real token (Discord's are some 70 characters), and replacing it
    # everywhere would garble the log.
    MIN_LITERAL_LENGTH = 8

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets = tuple(secret for secret in secrets if secret and len(secret) >= self.MIN_LITERAL_LENGTH)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.REDACTED)
        for pattern in self._PATTERNS:
            text = pattern.sub(rf"\g<1>{self.REDACTED}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatter.format uses exc_text when it is set: format the traceback once, redacted.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging(settings: Settings) -> None:
    """One handler on the root logger, with the redaction filter; noise the bot cannot act on is dropped.

    Under a test runner the root logger has handlers already, and keeps them.
    """
    root = logging.getLogger()
    if not root.handlers:  # what logging.basicConfig does, with the filter on the handler
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(SecretRedactionFilter([settings.discord_token]))
        root.addHandler(handler)
        root.setLevel(settings.log_level)
    _drop_noise()


def _drop_noise() -> None:
    """Filters on the loggers that say each thing, so the same words from elsewhere still show."""
    for name, noise_filter in (
        ("transformers.utils.import_utils", _TorchvisionFallbackFilter()),
        ("discord.client", _NoVoiceFilter()),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, type(noise_filter)) for existing in logger.filters):
            logger.addFilter(noise_filter)
    # huggingface_hub gives its logger a handler of its own and lets records propagate as well,
    # so every retry of a download printed twice: keep only ours (formatted, redacted).
    import huggingface_hub.utils.logging  # noqa: F401 - importing it is what adds that handler

    hub_logger = logging.getLogger("huggingface_hub")
    for hub_handler in list(hub_logger.handlers):
        hub_logger.removeHandler(hub_handler)
    hub_logger.propagate = True


def build_parser() -> argparse.ArgumentParser:
    from bot.runtime.cli import add_imagine_parser

    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description=_DESCRIPTION,
        epilog=_SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(
        dest="command", title="commands (none: start the Discord bot)", metavar="[COMMAND]"
    )
    add_imagine_parser(subparsers)
    subparsers.add_parser(  # streams transport: bot/workers/stream_main.py
        "worker",
        help="run a GPU worker that takes the bot's jobs through the Valkey or Redis server at REDIS_URL",
        description="Load the models (SD_MODEL, SD_EXTRA_MODELS) and run the jobs of the bot that reads the "
        "same REDIS_URL, until Ctrl-C or SIGTERM. WORKER_ID names it (default: the host's name and the process id).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if args.command == "imagine":
        from bot.runtime.cli import imagine_main

        return imagine_main(settings, args)
    if args.command == "worker":
        from bot.workers.stream_main import worker_main

        return worker_main(settings)
    from bot.runtime.launcher import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
