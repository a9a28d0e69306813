"""The gateway websocket: HELLO, IDENTIFY/READY, GUILD_CREATE, heartbeats, RESUME and dispatch.

discord.py always asks for a compressed stream (``compress=zlib-stream`` in the URL, see
``DiscordWebSocket.from_client``) but only decompresses *binary* frames (``received_message``
checks ``type(msg) is bytes``). The fake therefore answers with plain JSON text frames, which the
client accepts, and no compression is needed.

Each connection has an outgoing queue drained by one writer task, so events are delivered in the
order the fake produced them even when REST handlers and test code dispatch concurrently, and
producers never block.

Sharding works as Discord's: an IDENTIFY may carry ``shard: [shard_id, num_shards]`` (an invalid
pair is closed with 4010), and a guild's events (GUILD_CREATE, channel, role, member and message
events, interactions) go only to the session of the shard that owns it, ``(guild_id >> 22) %
num_shards``; events without a guild (DMs) go to shard 0. A session without ``shard`` gets all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord

_log = logging.getLogger(__name__)

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13

CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_INVALID_SHARD = 4010


def shard_of(guild_id: int | None, num_shards: int) -> int:
    """The shard Discord sends a guild's events to; events without a guild (DMs) go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % num_shards


def _valid_shard(shard: Any) -> bool:
    """``[shard_id, num_shards]`` with ``0 <= shard_id < num_shards``, as Discord requires."""
    if not isinstance(shard, list) or len(shard) != 2:
        return False
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in shard):
        return False
    shard_id, num_shards = shard
    return 0 <= shard_id < num_shards


class Connection:
    """One websocket, with an ordered outgoing queue drained by a single writer task."""

    def __init__(self, ws: web.WebSocketResponse, query: dict[str, str]) -> None:
        self.ws = ws
        self.query = query
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(), name="fakediscord-gateway-writer")

    @property
    def open(self) -> bool:
        return not self.ws.closed

    def send(self, payload: dict[str, Any]) -> None:
        self._queue.put_nowait(json.dumps(payload))

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            try:
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                # The peer went away; the reader loop notices and cleans up.
                return

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        """Flush what is queued, then close the socket."""
        self._queue.put_nowait(None)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._writer), timeout=2.0)
        if not self._writer.done():
            self._writer.cancel()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=message)

    async def stop_writer(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


@dataclass(slots=True, eq=False)
class GatewaySession:
    """An identified bot session. It outlives a dropped connection so the client can RESUME it."""

    session_id: str
    intents: int
    identify: dict[str, Any]
    connection: Connection | None
    shard: list[int] | None = None
    sequence: int = 0
    ready: bool = False
    presence: dict[str, Any] | None = None
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=2000))
    received_ops: list[int] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.open

    def wants(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def owns(self, guild_id: int | None) -> bool:
        """Whether this session gets the events of ``guild_id`` (None: a DM); all of them when unsharded."""
        if self.shard is None:
            return True
        shard_id, num_shards = self.shard
        return shard_of(guild_id, num_shards) == shard_id

    def dispatch(self, event: str, data: Any) -> None:
        """Send a DISPATCH now, or keep it for replay if the client is between connections."""
        self.sequence += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": self.sequence, "d": data}
        self.history.append(payload)
        if self.connected and self.connection is not None:
            self.connection.send(payload)


class Gateway:
    """Accepts gateway connections and keeps the sessions the fake dispatches events to."""

    def __init__(self, fake: FakeDiscord, *, heartbeat_interval_ms: int) -> None:
        self._fake = fake
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[Connection] = set()
        self._order: list[GatewaySession] = []

    def active(self) -> GatewaySession | None:
        """The most recently identified or resumed session that is connected and READY."""
        for session in reversed(self._order):
            if session.ready and session.connected:
                return session
        return None

    def active_for(self, guild_id: int | None) -> GatewaySession | None:
        """Like :meth:`active`, among the sessions that own ``guild_id`` (None: DMs, shard 0).

        Discord sends a guild's interactions through the shard that owns the guild.
        """
        for session in reversed(self._order):
            if session.ready and session.connected and session.owns(guild_id):
                return session
        return None

    def sharded(self) -> list[GatewaySession]:
        """The connected, READY sessions that identified with a ``shard``, by shard id."""
        live = [s for s in self.sessions.values() if s.shard is not None and s.ready and s.connected]
        return sorted(live, key=lambda s: s.shard or [])

    def broadcast(self, event: str, data: Any, *, intent: int | None = None) -> None:
        """Dispatch to every ready session subscribed to ``intent`` (or to all when None).

        An event about a guild (its ``guild_id``) goes only to the sessions of that guild's shard.
        """
        guild_id = _guild_of(data)
        for session in self.sessions.values():
            if session.ready and (intent is None or session.wants(intent)) and session.owns(guild_id):
                session.dispatch(event, data)

    async def close_all(self, code: int = 1001) -> None:
        for connection in list(self.connections):
            await connection.close(code=code)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The websocket endpoint at ``/`` (``DEFAULT_GATEWAY`` and ``resume_gateway_url``)."""
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=True, timeout=2.0, compress=False)
        await ws.prepare(request)
        connection = Connection(ws, dict(request.query))
        self.connections.add(connection)
        session: GatewaySession | None = None
        try:
            if request.query.get("encoding", "json") != "json":
                await connection.close(CLOSE_DECODE_ERROR, b"the fake only speaks encoding=json")
                return ws
            connection.send(
                {"op": OP_HELLO, "s": None, "t": None, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    if msg.type is WSMsgType.BINARY:
                        await connection.close(CLOSE_DECODE_ERROR, b"send JSON text frames")
                    break
                try:
                    frame = json.loads(msg.data)
                    op = int(frame["op"])
                except (ValueError, KeyError, TypeError):
                    await connection.close(CLOSE_DECODE_ERROR, b"invalid payload")
                    break
                session = await self._handle_op(connection, session, op, frame.get("d"))
                if connection.ws.closed:
                    break
        finally:
            self.connections.discard(connection)
            await connection.stop_writer()
            if session is not None and session.connection is connection:
                session.connection = None
            self._fake.feed.notify()
        return ws

    async def _handle_op(
        self, connection: Connection, session: GatewaySession | None, op: int, data: Any
    ) -> GatewaySession | None:
        if session is not None:
            session.received_ops.append(op)
        if op == OP_HEARTBEAT:
            connection.send({"op": OP_HEARTBEAT_ACK, "s": None, "t": None, "d": None})
        elif op == OP_IDENTIFY:
            return await self._identify(connection, data)
        elif op == OP_RESUME:
            return await self._resume(connection, data)
        elif session is None:
            await connection.close(CLOSE_NOT_AUTHENTICATED, b"identify first")
        elif op == OP_PRESENCE_UPDATE:
            session.presence = data
        elif op == OP_REQUEST_GUILD_MEMBERS:
            self._send_member_chunk(session, data)
        elif op == OP_VOICE_STATE_UPDATE:
            pass
        else:
            await connection.close(CLOSE_UNKNOWN_OPCODE, b"unknown opcode")
        return session

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> GatewaySession | None:
        if not self._fake.accepts_token(str(data.get("token") or "")):
            await connection.close(CLOSE_AUTHENTICATION_FAILED, b"Authentication failed.")
            return None
        if data.get("shard") is not None and not _valid_shard(data["shard"]):
            await connection.close(CLOSE_INVALID_SHARD, b"Invalid shard.")
            return None
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            intents=int(data.get("intents") or 0),
            identify=data,
            connection=connection,
            shard=data.get("shard"),
            presence=data.get("presence"),
        )
        self.sessions[session.session_id] = session
        self._order.append(session)
        session.dispatch("READY", self._ready_payload(session))
        include_members = session.wants(INTENT_GUILD_MEMBERS)
        for guild in self._fake.guilds.values():
            if not session.owns(guild.id):
                continue
            payload = guild.to_payload(bot_user_id=self._fake.bot_user.id, include_all_members=include_members)
            session.dispatch("GUILD_CREATE", payload)
        session.ready = True
        self._fake.feed.notify()
        return session

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        fake = self._fake
        payload: dict[str, Any] = {
            "v": 10,
            "user": {**fake.bot_user.to_payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in fake.guilds if session.owns(g)],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": fake.gateway_url,
            "application": {"id": str(fake.application_id), "flags": fake.application_flags},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "user_settings": {},
            "_trace": ["fakediscord"],
        }
        if session.shard is not None:
            payload["shard"] = session.shard
        return payload

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not self._fake.accepts_token(str(data.get("token") or "")):
            connection.send({"op": OP_INVALID_SESSION, "s": None, "t": None, "d": False})
            return None
        old = session.connection
        session.connection = connection
        session.received_ops.append(OP_RESUME)
        if old is not None and old is not connection:
            await old.close(code=4000)
        last_seen = int(data.get("seq") or 0)
        for payload in list(session.history):
            if payload["s"] > last_seen:
                connection.send(payload)
        session.dispatch("RESUMED", {"_trace": ["fakediscord"]})
        self._order.remove(session)
        self._order.append(session)
        self._fake.feed.notify()
        return session

    def _send_member_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """Answer REQUEST_GUILD_MEMBERS, which discord.py sends when it chunks guilds at start-up."""
        guild = self._fake.guilds.get(int(data["guild_id"]))
        members = list(guild.members.values()) if guild else []
        query = data.get("query")
        user_ids = {int(u) for u in data.get("user_ids") or []}
        if user_ids:
            members = [m for m in members if m.id in user_ids]
        elif query:
            members = [m for m in members if m.user.username.lower().startswith(str(query).lower())]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        found = {m.id for m in members}
        payload: dict[str, Any] = {
            "guild_id": str(data["guild_id"]),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in user_ids - found],
        }
        if data.get("nonce"):
            payload["nonce"] = data["nonce"]
        session.dispatch("GUILD_MEMBERS_CHUNK", payload)

    def send_reconnect(self) -> None:
        """Ask the active client to reconnect (op 7); discord.py then RESUMEs."""
        session = self.active()
        if session is None or session.connection is None:
            raise RuntimeError("no connected gateway session to reconnect")
        session.connection.send({"op": OP_RECONNECT, "s": None, "t": None, "d": None})


def _guild_of(data: Any) -> int | None:
    """The guild an event is about (its ``guild_id``), or None (a DM, or not about a guild)."""
    guild_id = data.get("guild_id") if isinstance(data, dict) else None
    return int(guild_id) if guild_id else None
