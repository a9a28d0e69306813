"""Entry point: ``python -m bot`` starts the Discord bot; ``python -m bot imagine`` (or ``edit``) runs one job
locally."""

from __future__ import annotations

import argparse
import sys

from bot.logs import configure_logging
from bot.settings import DEFAULT_MODEL, Settings, SettingsError

_DESCRIPTION = """\
Latentcord: an image-generation bot for Discord (Stable Diffusion, FLUX.2 klein, Z-Image).

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


def build_parser() -> argparse.ArgumentParser:
    from bot.runtime.cli import add_describe_parser, add_edit_parser, add_imagine_parser, add_upscale_parser

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
    add_edit_parser(subparsers)
    add_upscale_parser(subparsers)
    add_describe_parser(subparsers)
    subparsers.add_parser(  # streams transport: bot/gpu/stream_main.py
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
    configure_logging(settings.log_level, [settings.discord_token])
    if args.command in ("imagine", "edit", "upscale", "describe"):
        from bot.runtime.cli import imagine_main

        return imagine_main(settings, args)
    if args.command == "worker":
        from bot.runtime.worker import worker_main

        return worker_main(settings)
    from bot.runtime.launcher import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
