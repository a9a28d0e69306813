"""The ``streams`` transport: GPU workers on any host, reached through a Valkey or Redis server (``REDIS_URL``).

The bot and each worker (``python -m bot worker``, ``bot/gpu/stream_main.py``) only ever talk to the
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
* ``latentcord:presets``, a hash of the ``Ready`` (tokenizers left out) that last announced
  each model, by model: so a bot restarted while no worker is online still knows a model's
  size and steps, and admits jobs that wait for the next worker. A model no worker ever
  announced here is told from its id or configuration where this host can
  (``models.presets.declared_preset``: ``builtin:tiny``, a local folder or file); else the
  member is told in a sentence that it is not available yet. Nothing waits for a worker:
  the bot starts, and takes jobs, before any worker does.

A ``Run`` may still vanish on the way (a server restarted with the last second of its
writes lost, say) while its worker goes on sending heartbeats, and the dispatcher would
wait for it for ever. Each ``Ready`` counts the Runs its worker has read (``received``),
and the server stamps every entry with its own clock, so the bot notices a Run that a
worker's ``Ready`` written ``stale_after_s`` later has still not counted: it declares that
worker lost (the dispatcher puts the batch back) and takes it again at once. A server
restarted without its data (persistence off) forgets the group, the inboxes and what was in
them: the bot notices at once that its group is gone, creates it again and declares every
worker it knew lost in the same way. One bot reads a prefix's streams.

``stale_after_s`` (60 s) matches the dispatcher's default heartbeat timeout, on both sides.

Whoever cannot reach the server (the bot's readers, a worker's reader and sender, either side
at start) tries again after a wait drawn at random up to a cap that doubles from
``RETRY_FIRST_S`` to ``RETRY_CAP_S`` (exponential backoff with full jitter), each process from
its own ``random.Random``: after a restart of the server its workers come back spread out, not
all in the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from bot.gpu.broker import (
    BOOT_FIELD,
    FAILED,
    MESSAGE_FIELD,
    UNREACHABLE,
    BrokerUnreachable,
    Entry,
    Outage,
    StreamKeys,
    as_bytes,
    entry_ms,
    redacted,
    stream_entries,
    unreachable,
)
from bot.wire import (
    Cancel,
    Message,
    ProgressReport,
    ProtocolMismatch,
    Ready,
    Result,
    Run,
    VersionMismatch,
    decode,
    encode,
    refusal_notice,
)
from bot.workers.dispatch import WorkerLost
from models.errors import ModelUnavailable
from models.presets import declared_preset

if TYPE_CHECKING:
    from bot.settings import Settings
    from models.types import ModelPreset

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The consumer group the bot reads the results stream in.
GROUP = "bot"
#: An inbox nobody has sent to for this long is deleted by the server.
INBOX_TTL_S = 3600


@dataclass(slots=True, eq=False)
class _Sent:
    """A Run sent to a worker: the server time it was written at, None while the XADD is on its way."""

    written_ms: int | None = None


@dataclass(slots=True, eq=False)
class _Peer:
    """A worker as this bot knows it: its boot, and the Runs sent to that boot that it has not counted yet."""

    boot: str
    received: int  # its last Ready's ``received``: Runs it had read since it booted
    sent: list[_Sent] = field(default_factory=list)  # in the order they were sent; the first ones it counted

    def counted(self, received: int) -> list[_Sent]:
        """Forget the Runs a Ready counting ``received`` has read; those it has not, oldest first."""
        if received > self.received:
            self.sent = self.sent[received - self.received :]
            self.received = received
        return self.sent


def not_available_yet(model: str) -> str:
    """The sentence for a model that no worker has announced and that this host cannot tell the preset of."""
    return f"The model {model} is not available yet: no GPU worker has announced it; try again once one is online."


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
        rng: random.Random | None = None,
    ) -> None:
        self._url = redis_url
        self._keys = keys or StreamKeys()
        self._rng = rng if rng is not None else random.Random()  # seeded from the OS: each bot draws its own waits
        self._consumer = consumer
        self._stale_after_ms = int(stale_after_s * 1000)
        self._block_ms = max(1, int(block_s * 1000))
        self._block_s = block_s
        self._connect_timeout_s = connect_timeout_s
        self._redis: redis.asyncio.Redis | None = None
        self._deliver: Callable[[Message | WorkerLost], None] | None = None
        self._peers: dict[str, _Peer] = {}  # worker id -> its boot and the Runs sent to it
        self._unsettled: dict[str, list[bytes]] = {}  # batch id -> results entries waiting for ``settled``
        self._tokenized: set[str] = set()  # models whose tokenizer this bot has delivered
        self._refused: set[tuple[str, str | None]] = set()  # (worker id, boot) refused for their version
        self._kept_presets: dict[str, ModelPreset] = {}  # what this bot knows the presets hash holds
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- the Transport protocol ------------------------------------------------------------

    async def start(self, deliver: Callable[[Message | WorkerLost], None]) -> None:
        """Reach the server (waiting ``connect_timeout_s`` at most), make the group, start reading."""
        self._deliver = deliver
        try:
            client = self._redis = redis.asyncio.Redis.from_url(
                self._url,
                protocol=2,  # the replies stream_entries reads
                socket_connect_timeout=5.0,
                socket_timeout=self._block_s + 10.0,
                health_check_interval=30,
            )
        except ValueError as error:
            raise BrokerUnreachable(f"REDIS_URL is not a URL of a Valkey or Redis server ({error}).") from None
        deadline = time.monotonic() + self._connect_timeout_s
        outage = self.backoff("reaching the server")
        while True:
            try:
                await client.ping()
                await self._create_group()
                break
            except FAILED as error:
                left = deadline - time.monotonic()
                if left <= 0 or not isinstance(error, UNREACHABLE):
                    await client.aclose()
                    self._redis = None
                    raise BrokerUnreachable(unreachable(self._url, error)) from None
                await asyncio.sleep(min(outage.failed(error), left))
        outage.over()
        log.info("reading workers through %s", redacted(self._url))
        self._spawn(self._read_results(), "latentcord-results")
        self._spawn(self._read_progress(), "latentcord-progress")

    async def send(self, worker_id: str, message: Run | Cancel) -> None:
        client = self._client()
        key = self._keys.inbox(worker_id)
        peer = self._peers.get(worker_id)
        fields: dict[FieldT, EncodableT] = {
            MESSAGE_FIELD: encode(message),
            BOOT_FIELD: (peer.boot if peer else "").encode(),
        }
        sent = _Sent()
        if peer is not None and isinstance(message, Run):
            peer.sent.append(sent)  # before the XADD: a Ready that counts it may be read before it returns
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields)
                pipe.expire(key, INBOX_TTL_S)
                entry_id, _ = await pipe.execute()
            sent.written_ms = entry_ms(entry_id)
        except FAILED as error:
            if isinstance(message, Run):
                self._peers.pop(worker_id, None)
                # The worker will never see this batch: say so now, or the dispatcher waits for it for ever
                # while the worker's heartbeats keep it alive.
                self._to_dispatcher(WorkerLost(worker_id, f"its inbox could not be written ({error})"))
            else:
                log.warning("could not send a cancel to worker %s: %s", worker_id, error)

    async def settled(self, result: Result) -> None:
        """Acknowledge and delete the result's entry: the dispatcher has it now."""
        entry_ids = self._unsettled.pop(result.batch_id, [])
        if entry_ids and self._redis is not None:
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

    async def preset(self, model: str) -> ModelPreset:
        """As a worker last announced it (kept on the server), else as told from the model's id or configuration.

        Never waits for a worker, which may be hours away: ``ModelUnavailable`` with a sentence when
        neither can tell. A worker's announcement replaces it in the dispatcher when one comes.
        """
        kept = await self._kept_preset(model)
        if kept is not None:
            return kept
        declared = await asyncio.to_thread(declared_preset, model)
        if declared is None:
            raise ModelUnavailable(not_available_yet(model))
        return declared

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
        outage = self.backoff("reading the results stream")
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
                    await _back_off(outage, error, self._stopping)
                    continue
                await self._data_lost()
                claimed = True  # a new group holds nothing pending
            except UNREACHABLE as error:
                await _back_off(outage, error, self._stopping)

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
            if as_bytes(start) == b"0-0":
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
                await self._refuse(mismatch)
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
                ready = await self._fresh(message, written_ms=entry_ms(entry_id), now_ms=now_ms)
                if ready is not None:
                    self._to_dispatcher(ready)
            elif isinstance(message, ProgressReport):
                self._to_dispatcher(message)
            else:
                log.warning("ignoring a %s on %s", type(message).__name__, self._keys.results)
        if done:
            await self._forget(done)

    async def _fresh(self, ready: Ready, *, written_ms: int, now_ms: int) -> Ready | None:
        """The Ready to deliver, with the tokenizers this bot lacks; None for an old heartbeat and nothing more.

        Also where a Run that never reached its worker is noticed: a Ready that has not counted a Run
        written ``stale_after_s`` before it. Its worker is declared lost (the dispatcher puts the batch
        back) and, being alive, is taken again at once.
        """
        client = self._client()
        stale = now_ms - written_ms > self._stale_after_ms
        peer = self._peers.get(ready.worker_id)
        if peer is None or peer.boot != ready.boot_id:
            if peer is not None:  # a new life of the worker: its inbox holds what was meant for the last one
                await self._best_effort(client.delete(self._keys.inbox(ready.worker_id)), "clearing an inbox")
            self._peers[ready.worker_id] = _Peer(ready.boot_id, ready.received)
        elif not stale:
            missing = peer.counted(ready.received)
            oldest = missing[0].written_ms if missing else None
            if oldest is not None and written_ms - oldest > self._stale_after_ms:
                waited_s = (written_ms - oldest) / 1000
                self._to_dispatcher(
                    WorkerLost(ready.worker_id, f"a batch sent to it {waited_s:.0f} s ago never reached it")
                )
                self._peers[ready.worker_id] = _Peer(ready.boot_id, ready.received)
        await self._keep_presets(ready)
        tokenizers = dict(ready.tokenizers)
        for model, files in ready.tokenizers.items():
            if files:
                mapping: dict[FieldT, EncodableT] = dict(files.items())
                await self._best_effort(
                    client.hset(self._keys.tokenizer(model), mapping=mapping), "keeping a tokenizer"
                )
        for model in ready.models:
            if model not in self._tokenized and model not in tokenizers:
                stored = await self._best_effort(client.hgetall(self._keys.tokenizer(model)), "reading a tokenizer")
                if stored:
                    tokenizers[model] = {_as_text(name): as_bytes(data) for name, data in stored.items()}
        self._tokenized.update(tokenizers)
        if stale:
            # Written while no bot read: no heartbeat, the worker may be gone; its tokenizers still count.
            return replace(ready, free_slots=0, tokenizers=tokenizers) if tokenizers else None
        return replace(ready, tokenizers=tokenizers)

    async def _kept_preset(self, model: str) -> ModelPreset | None:
        """The preset of ``model`` in the last ``Ready`` that announced it, as the server keeps it."""
        stored = await self._best_effort(self._client().hget(self._keys.presets, model), "reading a preset")
        if not stored:
            return None
        try:
            announced = decode(as_bytes(stored))
        except ProtocolMismatch as mismatch:  # kept by a bot of another version
            log.info("ignoring the kept preset of %s: %s", model, mismatch)
            return None
        presets = announced.presets if isinstance(announced, Ready) else ()
        return next((preset for preset in presets if preset.model == model), None)

    async def _keep_presets(self, ready: Ready) -> None:
        """Write the presets a worker announced that the server does not hold yet, for a bot restarted later."""
        for preset in ready.presets:
            if self._kept_presets.get(preset.model) == preset:
                continue
            kept = replace(ready, free_slots=0, models=(preset.model,), presets=(preset,), tokenizers={})
            written = await self._best_effort(
                self._client().hset(self._keys.presets, preset.model, encode(kept)), "keeping a preset"
            )
            if written is not None:
                self._kept_presets[preset.model] = preset

    async def _refuse(self, mismatch: ProtocolMismatch) -> None:
        """Log a message dropped unread; a worker on another version is told why, once each time it boots."""
        if not isinstance(mismatch, VersionMismatch) or mismatch.sender is None:
            log.error("%s", mismatch)
            return
        if (mismatch.sender, mismatch.boot) in self._refused:
            return  # its heartbeats: said once
        self._refused.add((mismatch.sender, mismatch.boot))
        log.error("%s", mismatch)
        key = self._keys.inbox(mismatch.sender)
        fields: dict[FieldT, EncodableT] = {MESSAGE_FIELD: refusal_notice(), BOOT_FIELD: (mismatch.boot or "").encode()}

        async def tell() -> None:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields)
                pipe.expire(key, INBOX_TTL_S)
                await pipe.execute()

        await self._best_effort(tell(), "telling a worker why it was refused")

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
        lost, self._peers = list(self._peers), {}
        self._unsettled.clear()
        for worker_id in lost:
            self._to_dispatcher(WorkerLost(worker_id, "the Valkey or Redis server lost its data"))

    # -- the progress channel ------------------------------------------------------------------

    async def _read_progress(self) -> None:
        outage = self.backoff("reading progress")
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
                await _back_off(outage, error, self._stopping)
            finally:
                await self._best_effort(pubsub.aclose(), "closing the progress subscription")

    # -- small things --------------------------------------------------------------------------

    def backoff(self, what: str) -> Outage:
        """The waits between tries while the server cannot be reached, from this bot's own random numbers."""
        return Outage(what, self._rng)

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

    async def _best_effort(self, work: Awaitable[T], what: str) -> T | None:
        try:
            return await work
        except FAILED as error:
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


async def _back_off(outage: Outage, error: BaseException, stopping: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), outage.failed(error))
    except TimeoutError:
        pass
