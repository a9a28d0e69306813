"""What the bot and a ``python -m bot worker`` share on the Valkey or Redis server: the keys' names, the
fields of an entry, and how either side waits out a server it cannot reach.

``bot.workers.streams`` describes the keys and the bot's side of them; ``bot.gpu.stream_main``
the worker's.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

#: The field of a stream entry that holds the message's bytes.
MESSAGE_FIELD = b"m"
#: The field of an inbox entry that names the boot of the worker the bot addressed.
BOOT_FIELD = b"boot"
#: The errors that mean the server cannot be reached now; everything retries them.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: Those, or a refusal (a full server with maxmemory-policy noeviction answers OOM to new writes).
FAILED = (*UNREACHABLE, ResponseError)
#: Retrying an unreachable server: the n-th wait in a row is random in [0, min(RETRY_CAP_S, RETRY_FIRST_S * 2**n)].
RETRY_FIRST_S = 0.1
RETRY_CAP_S = 5.0

Entry = tuple[bytes, dict[bytes, bytes] | None]


class BrokerUnreachable(Exception):
    """The Valkey or Redis server at REDIS_URL did not answer; the message says what to check."""


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The names of the keys both sides use, under one prefix."""

    prefix: str = "latentcord"

    def inbox(self, worker_id: str) -> str:
        return f"{self.prefix}:inbox:{worker_id}"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    @property
    def progress(self) -> str:
        return f"{self.prefix}:progress"

    def tokenizer(self, model: str) -> str:
        return f"{self.prefix}:tokenizer:{model}"

    @property
    def presets(self) -> str:
        return f"{self.prefix}:presets"


def entry_ms(entry_id: bytes | str) -> int:
    """The server time, in milliseconds, at which a stream entry was written (the first half of its id)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def stream_entries(reply: object) -> list[Entry]:
    """The entries of an XREAD or XREADGROUP reply (RESP2: ``[[stream, [(id, fields), ...]], ...]``).

    An entry deleted while it was pending comes back with no fields (None).
    """
    entries: list[Entry] = []
    for group in reply if isinstance(reply, list) else ():
        for entry_id, fields in group[1]:
            if entry_id is not None:
                entries.append((as_bytes(entry_id), dict(fields) if isinstance(fields, dict) else None))
    return entries


def as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def redacted(url: str) -> str:
    """The URL without its password, for a log line or an error."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':' if user else ':'}***@{place}"


def unreachable(url: str, error: BaseException) -> str:
    """The sentence for a server that does not answer, or refuses (a wrong password, say)."""
    return (
        f"Cannot use the Valkey or Redis server at {redacted(url)} ({error}): check that it runs, that this "
        "host can reach it, and that REDIS_URL names it (with its password, if it has one)."
    )


class Outage:
    """Backs off while the server cannot be reached, and logs the outage once when it starts and once when it ends.

    ``failed`` returns how long to wait before the next try: exponential backoff with full
    jitter, drawn from ``rng``, so processes that lost the server together do not all come
    back in the same instant (see ``RETRY_FIRST_S``). Each side (the bot's event loop, a
    worker's threads) waits in its own way, until then or until it stops.
    """

    def __init__(self, what: str, rng: random.Random) -> None:
        self._what = what
        self._rng = rng
        self._since: float | None = None
        self._failures = 0  # in a row, since the server last answered

    def failed(self, error: BaseException) -> float:
        if self._since is None:
            self._since = time.monotonic()
            log.warning("%s failed (%s); retrying", self._what, error)
        cap = min(RETRY_CAP_S, RETRY_FIRST_S * 2 ** min(self._failures, 32))
        self._failures += 1
        return self._rng.uniform(0.0, cap)

    def over(self) -> None:
        if self._since is not None:
            log.info("%s: the server answers again after %.0f s", self._what, time.monotonic() - self._since)
            self._since = None
        self._failures = 0
