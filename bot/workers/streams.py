"""The ``streams`` transport: GPU workers on any host, reached through a Valkey or Redis server (``REDIS_URL``).

The bot and each worker (``python -m bot worker``, ``stream_main.py``) only ever talk to the
server; neither needs to reach the other. Every message is the protocol's msgpack bytes in
the field ``m`` of a stream entry, or a pub/sub payload. The keys, under the prefix
``latentcord``:

* ``latentcord:inbox:<worker id>``, a stream per worker: the bot XADDs ``Run`` and ``Cancel``
  to it, with the worker's boot id (from its last ``Ready``) in the field ``boot``. The
  worker reads it with XREAD BLOCK and XDELs what it has read. An entry addressed to another
  boot (its previous life, whose jobs the dispatcher has put back) is dropped unread; a
  ``Run`` read more than ``stale_after_s`` after it was written (the worker was stopped or cut
  off meanwhile, and the dispatcher has likely given its jobs to another) is answered with a
  failed ``Result`` instead of being run, so a zombie never spends its GPU on stale work and
  the dispatcher never waits for it. The worker deletes its inbox when it starts and stops;
  the bot deletes it when a new boot id appears, and the key expires ``INBOX_TTL_S`` after
  the last message sent to it, so dead workers leave nothing behind.
* ``latentcord:results``, one stream for every worker's ``Ready`` and ``Result``, read by the
  bot in the consumer group ``bot``. Both travel on it so a worker's messages arrive in the
  order it sent them and the one ``Ready`` of a boot that carries the tokenizers is never
  lost. A ``Ready`` is acknowledged and deleted as soon as it is delivered; a ``Result`` once
  the dispatcher has taken it (``settled``), so results are deleted once delivered and kept
  until then. On start the bot creates the group if it is missing (MKSTREAM, from the
  stream's first entry, so what workers wrote before any bot ran is read) and claims every
  entry an earlier bot process left pending (XAUTOCLAIM) before it reads new ones: a bot
  restart loses no ``Result``. A ``Ready`` older than ``stale_after_s`` (written while no bot
  read) is no heartbeat: it is dropped, or delivered with no free slot when it carries the
  tokenizers.
* ``latentcord:progress``, a pub/sub channel for ``ProgressReport``: lossy by design, as the
  protocol allows; a report lost costs a preview, or one heartbeat of many.
* ``latentcord:tokenizer:<model>``, a hash of a model's tokenizer files, written by the bot
  from the first ``Ready`` that carries them, so a restarted bot counts prompt tokens even
  though the workers, which outlive it, announced their tokenizers to its predecessor.

A server restarted without its data (persistence off) forgets the group, the inboxes and
what was in them. The bot notices that its group is gone, creates it again and declares
every worker it knew lost, so the dispatcher puts back the jobs whose ``Run`` may have
vanished; each worker's next ``Ready`` brings it back. One bot reads a prefix's streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.workers.dispatch import WorkerLost
from bot.workers.protocol import Cancel, Message, ProgressReport, ProtocolMismatch, Ready, Result, Run, decode, encode

if TYPE_CHECKING:
    from bot.settings import Settings
    from models.types import ModelPreset

log = logging.getLogger(__name__)

#: The consumer group the bot reads the results stream in.
GROUP = "bot"
#: The field of a stream entry that holds the message's bytes.
MESSAGE_FIELD = b"m"
#: The field of an inbox entry that names the boot of the worker the bot addressed.
BOOT_FIELD = b"boot"
#: An inbox nobody has sent to for this long is deleted by the server.
INBOX_TTL_S = 3600
#: The errors that mean the server cannot be reached now; everything retries them.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

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
                entries.append((_as_bytes(entry_id), dict(fields) if isinstance(fields, dict) else None))
    return entries


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def redacted(url: str) -> str:
    """The URL without its password, for a log line or an error."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':' if user else ':'}***@{place}"


def streams_transport(settings: Settings) -> StreamsTransport:
    """The transport ``open_core`` uses when ``REDIS_URL`` is set."""
    if settings.redis_url is None:
        raise ValueError("streams_transport needs settings.redis_url")
    return StreamsTransport(settings.redis_url)


class StreamsTransport:
    """A ``Transport`` over Valkey or Redis Streams; the workers run ``python -m bot worker`` anywhere."""

    def __init__(
        self,
        redis_url: str,
        *,
        keys: StreamKeys | None = None,
        consumer: str = "bot",
        stale_after_s: float = 60.0,
        block_s: float = 1.0,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self._url = redis_url
        self._keys = keys or StreamKeys()
        self._consumer = consumer
        self._stale_after_ms = int(stale_after_s * 1000)
        self._block_ms = max(1, int(block_s * 1000))
        self._block_s = block_s
        self._connect_timeout_s = connect_timeout_s
        self._redis: redis.asyncio.Redis | None = None
        self._deliver: Callable[[Message | WorkerLost], None] | None = None
        self._boots: dict[str, str] = {}  # worker id -> the boot id of its last Ready
        self._unsettled: dict[str, list[bytes]] = {}  # batch id -> results entries waiting for ``settled``
        self._tokenized: set[str] = set()  # models whose tokenizer this bot has delivered
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- the Transport protocol ------------------------------------------------------------

    async def start(self, deliver: Callable[[Message | WorkerLost], None]) -> None:
        """Reach the server (waiting ``connect_timeout_s`` at most), make the group, start reading."""
        self._deliver = deliver
        client = self._redis = redis.asyncio.Redis.from_url(
            self._url,
            protocol=2,  # the replies stream_entries reads
            socket_connect_timeout=5.0,
            socket_timeout=self._block_s + 10.0,
            health_check_interval=30,
        )
        deadline = time.monotonic() + self._connect_timeout_s
        while True:
            try:
                await client.ping()
                await self._create_group()
                break
            except UNREACHABLE as error:
                if time.monotonic() >= deadline:
                    await client.aclose()
                    raise BrokerUnreachable(
                        f"Cannot reach the Valkey or Redis server at {redacted(self._url)} ({error}): "
                        "check that it runs and that REDIS_URL names it."
                    ) from None
                await asyncio.sleep(1.0)
        log.info("reading workers through %s", redacted(self._url))
        self._spawn(self._read_results(), "latentcord-results")
        self._spawn(self._read_progress(), "latentcord-progress")

    async def send(self, worker_id: str, message: Run | Cancel) -> None:
        client = self._client()
        key = self._keys.inbox(worker_id)
        fields = {MESSAGE_FIELD: encode(message), BOOT_FIELD: self._boots.get(worker_id, "").encode()}
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields)  # type: ignore[arg-type]  # bytes keys are fine; the stub wants one type
                pipe.expire(key, INBOX_TTL_S)
                await pipe.execute()
        except UNREACHABLE as error:
            if isinstance(message, Run):
                # The worker will never see this batch: say so now, or the dispatcher waits for it for ever
                # while the worker's heartbeats keep it alive.
                self._to_dispatcher(WorkerLost(worker_id, f"its inbox could not be written ({error})"))
            else:
                log.warning("could not send a cancel to worker %s: %s", worker_id, error)

    async def settled(self, result: Result) -> None:
        """Acknowledge and delete the result's entry: the dispatcher has it now."""
        entry_ids = self._unsettled.pop(result.batch_id, [])
        if entry_ids:
            await self._forget(entry_ids)

    async def stop(self) -> None:
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._block_s * 3 + 1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def preset(self, model: str) -> ModelPreset | None:
        return None  # the workers announce their models' presets in Ready

    async def count_prompt_tokens(self, model: str, prompt: str) -> int | None:
        return None  # counted with the tokenizer a worker sent

    # -- the results stream ------------------------------------------------------------------

    async def _create_group(self) -> None:
        try:
            await self._client().xgroup_create(self._keys.results, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _read_results(self) -> None:
        client = self._client()
        claimed = False
        outage = _Outage("reading the results stream")
        while not self._stopping.is_set():
            try:
                if not claimed:
                    await self._claim_pending()
                    claimed = True
                reply = await client.xreadgroup(
                    GROUP, self._consumer, {self._keys.results: ">"}, count=64, block=self._block_ms
                )
                outage.over()
                await self._take(stream_entries(reply))
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    log.exception("reading the results stream failed")
                    await outage.wait(error, self._stopping)
                    continue
                await self._data_lost()
                claimed = True  # a new group holds nothing pending
            except UNREACHABLE as error:
                await outage.wait(error, self._stopping)

    async def _claim_pending(self) -> None:
        """Take over what an earlier bot read and never settled (its Results), oldest first."""
        client = self._client()
        start: bytes | str = "0-0"
        for _ in range(100_000):  # bounded: 64 entries a round
            reply = await client.xautoclaim(self._keys.results, GROUP, self._consumer, 0, start_id=start, count=64)
            next_start = reply[0] if reply else b"0-0"
            entries = stream_entries([[self._keys.results, reply[1]]]) if len(reply) > 1 else []
            if entries:
                log.info("taking %d message(s) an earlier bot process left unread", len(entries))
                await self._take(entries)
            start = next_start
            if _as_bytes(start) == b"0-0":
                return

    async def _take(self, entries: Sequence[Entry]) -> None:
        """Deliver each entry's message in order; everything but a Result is forgotten at once."""
        if not entries:
            return
        done: list[bytes] = []
        now_ms: int | None = None
        for entry_id, fields in entries:
            data = fields.get(MESSAGE_FIELD) if fields else None
            if data is None:
                done.append(entry_id)
                continue
            try:
                message = decode(data)
            except ProtocolMismatch as mismatch:
                log.error("dropping a message on %s: %s", self._keys.results, mismatch)
                done.append(entry_id)
                continue
            if isinstance(message, Result):
                self._unsettled.setdefault(message.batch_id, []).append(entry_id)
                self._to_dispatcher(message)
                continue
            done.append(entry_id)
            if isinstance(message, Ready):
                if now_ms is None:
                    seconds, micros = await self._client().time()
                    now_ms = seconds * 1000 + micros // 1000
                ready = await self._fresh(message, stale=now_ms - entry_ms(entry_id) > self._stale_after_ms)
                if ready is not None:
                    self._to_dispatcher(ready)
            elif isinstance(message, ProgressReport):
                self._to_dispatcher(message)
            else:
                log.warning("ignoring a %s on %s", type(message).__name__, self._keys.results)
        if done:
            await self._forget(done)

    async def _fresh(self, ready: Ready, *, stale: bool) -> Ready | None:
        """The Ready to deliver, with the tokenizers this bot lacks; None for an old heartbeat and nothing more."""
        client = self._client()
        known = self._boots.get(ready.worker_id)
        if known is not None and known != ready.boot_id:
            # A new life of the worker: what its inbox holds was meant for the last one.
            await self._best_effort(client.delete(self._keys.inbox(ready.worker_id)), "clearing an inbox")
        self._boots[ready.worker_id] = ready.boot_id
        tokenizers = dict(ready.tokenizers)
        for model, files in ready.tokenizers.items():
            if files:
                await self._best_effort(client.hset(self._keys.tokenizer(model), mapping=files), "keeping a tokenizer")
        for model in ready.models:
            if model not in self._tokenized and model not in tokenizers:
                stored = await self._best_effort(client.hgetall(self._keys.tokenizer(model)), "reading a tokenizer")
                if stored:
                    tokenizers[model] = {_as_text(name): bytes(data) for name, data in stored.items()}
        self._tokenized.update(tokenizers)
        if stale:
            # Written while no bot read: no heartbeat, the worker may be gone; its tokenizers still count.
            return replace(ready, free_slots=0, tokenizers=tokenizers) if tokenizers else None
        return replace(ready, tokenizers=tokenizers)

    async def _forget(self, entry_ids: Sequence[bytes]) -> None:
        async def ack_and_delete() -> None:
            async with self._client().pipeline(transaction=False) as pipe:
                pipe.xack(self._keys.results, GROUP, *entry_ids)
                pipe.xdel(self._keys.results, *entry_ids)
                await pipe.execute()

        await self._best_effort(ack_and_delete(), "deleting delivered messages")

    async def _data_lost(self) -> None:
        """The group is gone: the server lost its data. Make it again; the workers' jobs are put back."""
        log.warning(
            "the results group on %s is gone: the server lost its data (restarted without persistence?); "
            "the jobs workers held are put back",
            redacted(self._url),
        )
        await self._create_group()
        lost, self._boots = list(self._boots), {}
        self._unsettled.clear()
        for worker_id in lost:
            self._to_dispatcher(WorkerLost(worker_id, "the Valkey or Redis server lost its data"))

    # -- the progress channel ------------------------------------------------------------------

    async def _read_progress(self) -> None:
        outage = _Outage("reading progress")
        while not self._stopping.is_set():
            pubsub = self._client().pubsub()
            try:
                await pubsub.subscribe(self._keys.progress)
                while not self._stopping.is_set():
                    item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._block_s)
                    outage.over()
                    if item is None or item.get("type") != "message":
                        continue
                    try:
                        message = decode(item["data"])
                    except ProtocolMismatch as mismatch:
                        log.debug("dropping a message on %s: %s", self._keys.progress, mismatch)
                        continue
                    if isinstance(message, ProgressReport):
                        self._to_dispatcher(message)
            except UNREACHABLE as error:
                await outage.wait(error, self._stopping)
            finally:
                await self._best_effort(pubsub.aclose(), "closing the progress subscription")

    # -- small things --------------------------------------------------------------------------

    def _client(self) -> redis.asyncio.Redis:
        if self._redis is None:
            raise RuntimeError("the streams transport was not started")
        return self._redis

    def _to_dispatcher(self, message: Message | WorkerLost) -> None:
        if self._deliver is None:
            return
        try:
            self._deliver(message)
        except Exception:
            log.exception("the dispatcher failed on a %s", type(message).__name__)

    async def _best_effort(self, work: Coroutine[Any, Any, Any], what: str) -> Any:
        try:
            return await work
        except UNREACHABLE as error:
            log.warning("%s failed: %s", what, error)
            return None

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_log_death)
        self._tasks.append(task)


def _as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


class _Outage:
    """Backs off while the server cannot be reached, and logs the outage once when it starts and once when it ends."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._since: float | None = None
        self._delay = 0.1

    async def wait(self, error: BaseException, stopping: asyncio.Event) -> None:
        if self._since is None:
            self._since = time.monotonic()
            log.warning("%s: the server cannot be reached (%s); retrying", self._what, error)
        try:
            await asyncio.wait_for(stopping.wait(), self._delay)
        except TimeoutError:
            pass
        self._delay = min(self._delay * 2, 5.0)

    def over(self) -> None:
        if self._since is not None:
            log.info("%s: the server answers again after %.0f s", self._what, time.monotonic() - self._since)
            self._since = None
            self._delay = 0.1
