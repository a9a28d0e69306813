"""Threads that must never take the CPU from the event loop.

On a small host (2 cores) the GPU thread with torch's CPU threads, PNG encoding and
the classifier can keep every core busy; the event loop then waits for the OS to
schedule it, misses Discord's 3-second window and falls behind on heartbeats.
Background threads run at a lower scheduling priority, so they use every idle
cycle and yield at once when the loop has work. (Linux schedules threads one by
one and a thread's children inherit its nice value, so torch's worker threads
started from the GPU thread are lowered with it.)
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

#: How much lower than the event loop background threads run (the nice increment, 0-19).
BACKGROUND_NICENESS = 10


def lower_this_thread() -> None:
    """Lower the calling thread's scheduling priority; where the OS cannot, leave it as it is."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + BACKGROUND_NICENESS))
    except (AttributeError, OSError) as error:  # not Linux, or not permitted: run as is
        log.debug("could not lower the priority of thread %s: %s", threading.current_thread().name, error)


def background_executor(max_workers: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads run below the event loop's priority."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name, initializer=lower_this_thread)
