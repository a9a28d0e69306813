"""Entry point: ``python -m bot`` starts the Discord bot; ``python -m bot imagine`` runs one job locally."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.settings import Settings, SettingsError


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' notice that image processors fall back to PIL without torchvision.

    Latentcord never uses those processors (it classifies images with its own
    model), so the notice is noise on every start.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallbackFilter())
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="Latentcord: a Stable Diffusion bot for Discord."
    )
    subparsers = parser.add_subparsers(dest="command")
    from bot.cli import add_imagine_parser

    add_imagine_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.command == "imagine":
        from bot.cli import imagine_main

        return imagine_main(settings, args)
    from bot.launcher import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
