"""How every Latentcord process logs: one format, secrets redacted, noise it cannot act on dropped.

The bot (``python -m bot``), its worker children and ``python -m bot worker`` all call
``configure_logging`` first; it knows nothing of the settings, so the GPU side uses it too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def configure_logging(level: str, secrets: Iterable[str | None] = ()) -> None:
    """One handler on the root logger at ``level``, redacting ``secrets`` (and interaction and webhook tokens);
    noise the bot cannot act on is dropped. Under a test runner the root logger has handlers already, and keeps them.
    """
    root = logging.getLogger()
    if not root.handlers:  # what logging.basicConfig does, with the filter on the handler
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(SecretRedactionFilter(secrets))
        root.addHandler(handler)
        root.setLevel(level)
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
