"""Queueing simulation of the bot with 1-8 GPU workers sharing the bot's real fair queue.

A discrete-event simulation: a synthetic community sends jobs, the bot's own ``FairQueue`` (the
code the dispatcher runs) holds them and forms every batch with ``take_batch``, and whichever
simulated worker is free runs it. As in the bot, workers never prefetch: a batch is formed only
at the moment a worker is free, from what is queued then.

The community: each member's sessions arrive as a Poisson process; a session is a burst of jobs
whose size is a discrete Pareto draw (heavy-tailed), sent one after another with a think time
between prompts, all with the session's settings (its batch key, Zipf-distributed over a few
popular model/size/steps combinations). A few heavy members, more regular ones, many light
ones. The queue's limits refuse jobs as the bot does; a member refused for having too many jobs
waiting sends it again after one of theirs finishes, one refused for a full queue after a pause.

Batch times: ``--batch-seconds + --image-seconds x images``. The defaults are the CPU figures of
``bench/bench_worker.py`` (b) on ``builtin:tiny`` in the README (1-image batches 11.7 images/s,
8-image batches 54.2 images/s, 2026-11-29); no GPU figures are measured yet: pass them here when
there are. The community's clock is scaled so that it offers ``--load`` times the work one
worker does when every job runs alone, so the figures depend on the timings only through their
unit (waits scale with them) and on the batch-time ratio (how much batching saves).

Before the community it checks the engine against Erlang C: Poisson arrivals, exponential
service, batches of one image, no failures, one worker (M/M/1) and two (M/M/2), each at
utilisation 0.5 over 200,000 jobs; the simulated mean wait against Erlang C's
W_q = C(c, a) / (c mu - lambda). Over 20 seeds the relative error had a standard deviation of
about 1 %; it exits non-zero when it is over 5 %.

    python bench/simulate_workers.py [--seed 1] [--load 2.0] [--hours 48] [--max-workers 8]
    python bench/simulate_workers.py --check-erlang
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.errors import QueueFull
from bot.workers.fair_queue import FairQueue

# bench_worker.py (b) on builtin:tiny, 64 px, 8 steps, CPU (README, 2026-11-29): a 1-image batch at 11.7 images/s
# and an 8-image batch at 54.2 images/s; a straight line through both. (Its (a), 4-image batches at about
# 0.125 s, is within 10 % of the line's 0.112 s.)
TINY_ONE_IMAGE_S = 1 / 11.7
TINY_EIGHT_IMAGES_S = 8 / 54.2
DEFAULT_IMAGE_S = (TINY_EIGHT_IMAGES_S - TINY_ONE_IMAGE_S) / 7
DEFAULT_BATCH_S = TINY_ONE_IMAGE_S - DEFAULT_IMAGE_S

ERLANG_TOLERANCE = 0.05
HOUR_S = 3600.0


# -- the engine --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Job:
    """What the fair queue needs (``job_id``, ``owner``, ``images``, ``batch_key``) and its times."""

    job_id: int
    owner: int
    images: int
    batch_key: Hashable
    think_s: float = 0.0  # the member's pause before sending it, simulated seconds
    submitted: float = math.nan  # accepted by the queue
    started: float = math.nan
    finished: float = math.nan
    failed: bool = False


class Simulator:
    """Workers around one ``FairQueue``; events in a heap, ties in the order they were scheduled."""

    def __init__(
        self,
        *,
        workers: int,
        service: Callable[[list[Job]], float],
        max_images: int,
        max_per_owner: int,
        max_total: int,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.queue: FairQueue[Job] = FairQueue(max_per_owner=max_per_owner, max_total=max_total)
        self.workers = workers
        self.max_per_owner = max_per_owner
        self._service = service
        self._max_images = max_images
        self._failure_rate = failure_rate
        self._rng = rng or random.Random(0)
        self._free = list(range(workers))  # a heap: the lowest-numbered idle worker takes the next batch
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._ids = 0
        self.now = 0.0
        self.busy_s = 0.0
        self.makespan = 0.0
        self.batches = 0
        self.batched_images = 0
        self.on_done: Callable[[Job], None] = lambda job: None

    def new_id(self) -> int:
        self._ids += 1
        return self._ids

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, self._seq, action))
        self._seq += 1

    def submit(self, job: Job) -> None:
        """Queue ``job`` now, or raise ``QueueFull`` as the bot's queue does."""
        self.queue.push(job)
        job.submitted = self.now
        self._dispatch()

    def run(self) -> None:
        while self._events:
            when, _, action = heapq.heappop(self._events)
            self.now = when
            action()

    def _dispatch(self) -> None:
        while self._free and len(self.queue):
            batch = self.queue.take_batch(self._max_images)
            worker = heapq.heappop(self._free)
            for job in batch:
                job.started = self.now
            duration = self._service(batch)
            self.busy_s += duration
            self.batches += 1
            self.batched_images += sum(job.images for job in batch)
            self.at(self.now + duration, partial(self._finish, worker, batch))

    def _finish(self, worker: int, batch: list[Job]) -> None:
        heapq.heappush(self._free, worker)
        self.makespan = self.now
        failed = self._failure_rate > 0 and self._rng.random() < self._failure_rate
        self._dispatch()  # the freed worker takes the next batch before anyone has reacted
        for job in batch:
            job.finished = self.now
            job.failed = failed
            self.on_done(job)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank, as bench_worker.py computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all are equal, 1/n when one member has it all."""
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


# -- the Erlang C check ------------------------------------------------------------------------


def erlang_c(servers: int, offered: float) -> float:
    """The probability that an arrival waits in M/M/c with offered load ``offered`` = lambda / mu."""
    term = 1.0
    below = 0.0
    for k in range(servers):
        below += term
        term *= offered / (k + 1)
    top = term * servers / (servers - offered)
    return top / (below + top)


@dataclass(frozen=True)
class ErlangCheck:
    servers: int
    utilisation: float
    jobs: int
    simulated_wait: float
    analytic_wait: float

    @property
    def error(self) -> float:
        return abs(self.simulated_wait - self.analytic_wait) / self.analytic_wait


def check_erlang(servers: int, utilisation: float, jobs: int, seed: int, warm_up: int | None = None) -> ErlangCheck:
    """M/M/c through the engine and the real queue: batches of one image, no failures, no limits.

    Jobs belong to 20 owners in turn, so the queue's round-robin is exercised; an order that never
    looks at service times leaves the mean wait of M/M/c unchanged. The first ``warm_up`` jobs
    (default 5 %) are left out, as the queue starts empty.
    """
    mu = 1.0
    lam = utilisation * servers * mu
    arrivals, services = random.Random(seed), random.Random(seed + 1)
    sim = Simulator(
        workers=servers,
        service=lambda batch: services.expovariate(mu),
        max_images=1,
        max_per_owner=jobs,
        max_total=jobs,
    )
    sent: list[Job] = []

    def arrive() -> None:
        job = Job(job_id=len(sent), owner=len(sent) % 20, images=1, batch_key=None)
        sent.append(job)
        sim.submit(job)
        if len(sent) < jobs:
            sim.at(sim.now + arrivals.expovariate(lam), arrive)

    sim.at(arrivals.expovariate(lam), arrive)
    sim.run()
    skip = jobs // 20 if warm_up is None else warm_up
    waits = [job.started - job.submitted for job in sent[skip:]]
    analytic = erlang_c(servers, lam / mu) / (servers * mu - lam)
    return ErlangCheck(servers, utilisation, len(waits), sum(waits) / len(waits), analytic)


# -- the community -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberClass:
    name: str
    members: int
    sessions_per_hour: float  # Poisson, per member
    burst_min: int  # the Pareto's scale: the smallest burst
    burst_alpha: float  # the Pareto's tail index: the smaller, the heavier the tail
    burst_max: int
    think_s: float  # mean pause between a member's prompts, community seconds (exponential)


CLASSES = (
    MemberClass("heavy", 3, 4.0, 4, 1.2, 60, 10.0),
    MemberClass("regular", 15, 1.5, 2, 1.6, 20, 20.0),
    MemberClass("light", 100, 0.5, 1, 2.2, 8, 30.0),
)
IMAGES = ((1, 0.45), (2, 0.15), (4, 0.40))  # /imagine's count option
RETRY_S = 60.0  # community seconds a member refused by a full queue waits before sending again


@dataclass(frozen=True)
class JobSpec:
    images: int
    batch_key: int
    think_s: float  # community seconds


@dataclass(frozen=True)
class Session:
    start_s: float  # community seconds
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class Member:
    owner: int
    klass: str
    think_s: float
    sessions: tuple[Session, ...]


def zipf_weights(count: int, exponent: float) -> list[float]:
    return [1 / (rank**exponent) for rank in range(1, count + 1)]


def community(seed: int, hours: float, recipes: int) -> list[Member]:
    """Every member's sessions over ``hours``, drawn once and replayed for every number of workers."""
    rng = random.Random(seed)
    keys = list(range(recipes))
    key_weights = zipf_weights(recipes, 1.5)
    counts, count_weights = zip(*IMAGES, strict=True)
    members: list[Member] = []
    for klass in CLASSES:
        for _ in range(klass.members):
            sessions = []
            start = rng.expovariate(klass.sessions_per_hour / HOUR_S)
            while start < hours * HOUR_S:
                size = min(klass.burst_max, int(klass.burst_min * (1.0 - rng.random()) ** (-1 / klass.burst_alpha)))
                key = rng.choices(keys, key_weights)[0]
                jobs = tuple(
                    JobSpec(rng.choices(counts, count_weights)[0], key, rng.expovariate(1 / klass.think_s) if n else 0)
                    for n in range(size)
                )
                sessions.append(Session(start, jobs))
                start += rng.expovariate(klass.sessions_per_hour / HOUR_S)
            members.append(Member(len(members), klass.name, klass.think_s, tuple(sessions)))
    return members


class Person:
    """One member at the keyboard: sends their jobs in order, reacts to refusals and failures."""

    def __init__(self, sim: Simulator, member: Member, scale: float, rng: random.Random) -> None:
        self.sim = sim
        self.member = member
        self.scale = scale  # simulated seconds per community second
        self.rng = rng
        self.backlog: deque[Job] = deque()
        self.sending = False  # a send is scheduled
        self.blocked = False  # refused for too many jobs waiting; sends again when one of theirs finishes
        self.attempts = 0
        self.refused = 0
        self.done: list[Job] = []

    def session(self, jobs: list[Job]) -> None:
        self.backlog.extend(jobs)
        if not self.sending and not self.blocked:
            self._next()

    def _next(self) -> None:
        if self.backlog:
            self.sending = True
            self.sim.at(self.sim.now + self.backlog[0].think_s, self._send)

    def _send(self) -> None:
        self.sending = False
        job = self.backlog[0]
        self.attempts += 1
        try:
            self.sim.submit(job)
        except QueueFull:
            self.refused += 1
            if len(self.sim.queue.pending(job.owner)) >= self.sim.max_per_owner:
                self.blocked = True
            else:
                self.sending = True
                self.sim.at(self.sim.now + self.rng.expovariate(1 / (RETRY_S * self.scale)), self._send)
            return
        self.backlog.popleft()
        self._next()

    def finished(self, job: Job) -> None:
        self.done.append(job)
        if job.failed:  # sent again, first, after a moment's thought
            think = self.rng.expovariate(1 / (self.member.think_s * self.scale))
            self.backlog.appendleft(Job(self.sim.new_id(), job.owner, job.images, job.batch_key, think))
        if self.blocked:
            self.blocked = False
            self._next()
        elif job.failed and not self.sending:
            self._next()


@dataclass(frozen=True)
class ClassFigures:
    name: str
    members: int
    jobs: int  # jobs that started (a failed job and its resend count twice)
    refused: float  # share of sends the queue refused
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class RunFigures:
    workers: int
    utilisation: float
    fairness: float
    images_per_batch: float
    failed: int
    makespan_s: float
    classes: tuple[ClassFigures, ...]

    def klass(self, name: str) -> ClassFigures:
        return next(figures for figures in self.classes if figures.name == name)


@dataclass(frozen=True)
class Timing:
    batch_s: float
    image_s: float

    def seconds(self, images: int) -> float:
        return self.batch_s + self.image_s * images


def time_scale(members: Sequence[Member], timing: Timing, load: float, hours: float) -> float:
    """Simulated seconds per community second, so the community offers ``load`` x one worker's unbatched work."""
    work = sum(timing.seconds(spec.images) for m in members for s in m.sessions for spec in s.jobs)
    return work / (load * hours * HOUR_S)


def simulate(
    members: Sequence[Member],
    workers: int,
    *,
    timing: Timing,
    scale: float,
    max_images: int,
    max_per_owner: int,
    max_total: int,
    failure_rate: float,
    seed: int,
) -> RunFigures:
    sim = Simulator(
        workers=workers,
        service=lambda batch: timing.seconds(sum(job.images for job in batch)),
        max_images=max_images,
        max_per_owner=max_per_owner,
        max_total=max_total,
        failure_rate=failure_rate,
        rng=random.Random(seed),
    )
    people = [Person(sim, member, scale, random.Random(seed * 1000 + member.owner)) for member in members]
    sim.on_done = lambda job: people[job.owner].finished(job)
    for person in people:
        for session in person.member.sessions:
            jobs = [
                Job(sim.new_id(), person.member.owner, spec.images, spec.batch_key, spec.think_s * scale)
                for spec in session.jobs
            ]
            sim.at(session.start_s * scale, partial(person.session, jobs))
    sim.run()

    # Fairness: Jain's index over members of their mean slowdown, (finish - accepted) / the job's batch
    # time alone. Slowdown puts 1-image and 4-image jobs on one scale, and it measures what the
    # scheduler shares out (delay), not what members ask for: throughput shares would only mirror
    # how much each member sends. 1 = everyone kept waiting alike relative to their own work.
    slowdowns = []
    for person in people:
        served = [job for job in person.done if not job.failed]
        if served:
            slowdowns.append(
                sum((job.finished - job.submitted) / timing.seconds(job.images) for job in served) / len(served)
            )
    classes = []
    for klass in CLASSES:
        group = [person for person in people if person.member.klass == klass.name]
        waits = [job.started - job.submitted for person in group for job in person.done]
        attempts = sum(person.attempts for person in group)
        refused = sum(person.refused for person in group) / attempts if attempts else 0.0
        p50, p95, p99 = (percentile(waits, q) if waits else math.nan for q in (0.50, 0.95, 0.99))
        classes.append(ClassFigures(klass.name, len(group), len(waits), refused, p50, p95, p99))
    return RunFigures(
        workers=workers,
        utilisation=sim.busy_s / (workers * sim.makespan),
        fairness=jain(slowdowns),
        images_per_batch=sim.batched_images / sim.batches,
        failed=sum(job.failed for person in people for job in person.done),
        makespan_s=sim.makespan,
        classes=tuple(classes),
    )


# -- the figure --------------------------------------------------------------------------------

COLOURS = {"heavy": "#c0392b", "regular": "#2e86c1", "light": "#27ae60"}
DASHES = {"p50": "2,3", "p95": "7,4", "p99": ""}


def svg(runs: Sequence[RunFigures], title: str, floor: float) -> str:
    """Waits per class (log scale, from ``floor``) and utilisation/fairness against workers, by hand."""
    width, height, top, bottom, panel = 900, 380, 50, 320, 360
    lefts = (70, 520)
    xs = [run.workers for run in runs]

    def x_of(left: int, workers: int) -> float:
        return left + (workers - xs[0]) / max(1, xs[-1] - xs[0]) * panel

    waits = [getattr(c, q) for run in runs for c in run.classes for q in DASHES if getattr(c, q) > 0]
    low = floor
    high = max(10 * low, 10 ** math.ceil(math.log10(max(waits)))) if waits else 10 * low

    def y_wait(value: float) -> float:
        return bottom - (math.log10(max(value, low)) - math.log10(low)) / math.log10(high / low) * (bottom - top)

    def y_unit(value: float) -> float:
        return bottom - value * (bottom - top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 60}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height + 60}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for left, label in zip(lefts, ("wait until the job starts (s, log scale)", "utilisation, fairness"), strict=True):
        out.append(f'<rect x="{left}" y="{top}" width="{panel}" height="{bottom - top}" fill="none" stroke="#444"/>')
        out.append(
            f'<text transform="translate({left - 50},{(top + bottom) / 2}) rotate(-90)" text-anchor="middle">{label}</text>'
        )
        out.append(f'<text x="{left + panel / 2}" y="{bottom + 34}" text-anchor="middle">GPU workers</text>')
        for workers in xs:
            out.append(f'<text x="{x_of(left, workers)}" y="{bottom + 16}" text-anchor="middle">{workers}</text>')
    exponent = round(math.log10(low))
    while 10**exponent <= high * 1.001:
        y = y_wait(10**exponent)
        out.append(f'<line x1="{lefts[0]}" x2="{lefts[0] + panel}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{lefts[0] - 6}" y="{y + 4}" text-anchor="end">{10**exponent:g}</text>')
        exponent += 1
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = y_unit(tick)
        out.append(f'<line x1="{lefts[1]}" x2="{lefts[1] + panel}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{lefts[1] - 6}" y="{y + 4}" text-anchor="end">{tick:g}</text>')

    def line(points: list[tuple[float, float]], colour: str, dash: str) -> str:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'

    for name, colour in COLOURS.items():
        for q, dash in DASHES.items():
            out.append(
                line([(x_of(lefts[0], r.workers), y_wait(getattr(r.klass(name), q))) for r in runs], colour, dash)
            )
    out.append(line([(x_of(lefts[1], r.workers), y_unit(r.utilisation)) for r in runs], "#333", ""))
    out.append(line([(x_of(lefts[1], r.workers), y_unit(r.fairness)) for r in runs], "#8e44ad", "7,4"))

    legend = [(f"{name}", colour, "") for name, colour in COLOURS.items()]
    legend += [(q, "#999", dash) for q, dash in DASHES.items()]
    legend += [("GPU utilisation", "#333", ""), ("Jain's index of mean slowdown", "#8e44ad", "7,4")]
    x = 70
    for label, colour, dash in legend:
        out.append(line([(x, height + 25), (x + 24, height + 25)], colour, dash))
        out.append(f'<text x="{x + 30}" y="{height + 29}">{label}</text>')
        x += 42 + 7 * len(label)
    out.append(f'<text x="{lefts[0] + 4}" y="{bottom - 6}" fill="#666">waits under {low:g} s drawn at {low:g} s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- the command line --------------------------------------------------------------------------


def report_erlang(check: ErlangCheck) -> bool:
    ok = check.error <= ERLANG_TOLERANCE
    print(
        f"    M/M/{check.servers} at utilisation {check.utilisation:.2f}, {check.jobs} jobs after the warm-up: "
        f"mean wait simulated {check.simulated_wait:.4f}, Erlang C {check.analytic_wait:.4f} (1/mu = 1), "
        f"error {check.error:.2%} {'ok' if ok else 'FAIL'} (tolerance {ERLANG_TOLERANCE:.0%})"
    )
    return ok


def seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-workers", type=int, default=8, help="simulate 1..this many GPU workers")
    parser.add_argument(
        "--load", type=float, default=2.0, help="the community's work, in workers running every job alone"
    )
    parser.add_argument("--hours", type=float, default=48.0, help="community hours of sessions")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_S, help="a batch's fixed cost")
    parser.add_argument("--image-seconds", type=float, default=DEFAULT_IMAGE_S, help="each image's cost")
    parser.add_argument("--max-images", type=int, default=8, help="BATCH_MAX_IMAGES")
    parser.add_argument("--max-per-user", type=int, default=5, help="QUEUE_MAX_PER_USER")
    parser.add_argument("--max-total", type=int, default=100, help="QUEUE_MAX_TOTAL")
    parser.add_argument("--recipes", type=int, default=6, help="batch keys in use, Zipf-popular")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of batches that fail (resent)")
    parser.add_argument("--check-jobs", type=int, default=200_000, help="jobs in each Erlang C check")
    parser.add_argument("--check-erlang", action="store_true", help="run only the Erlang C check")
    parser.add_argument(
        "--svg", type=Path, default=Path(__file__).resolve().parent.parent / "docs/simulate_workers.svg"
    )
    args = parser.parse_args(argv)

    print("Erlang C check (Poisson arrivals, exponential service, batches of one, no failures):")
    checks = [check_erlang(servers, 0.5, args.check_jobs, args.seed) for servers in (1, 2)]
    if not all([report_erlang(check) for check in checks]):
        return 1
    if args.check_erlang:
        return 0

    timing = Timing(args.batch_seconds, args.image_seconds)
    members = community(args.seed, args.hours, args.recipes)
    scale = time_scale(members, timing, args.load, args.hours)
    jobs = sum(len(s.jobs) for m in members for s in m.sessions)
    print(
        f"\nCommunity (seed {args.seed}): "
        + ", ".join(f"{k.members} {k.name}" for k in CLASSES)
        + f"; {args.hours:g} h of sessions, {jobs} jobs sent, {args.recipes} batch keys"
    )
    print(
        f"Batch time {timing.batch_s:.4f} s + {timing.image_s:.4f} s/image (1 image {timing.seconds(1):.3f} s, "
        f"{args.max_images} images {timing.seconds(args.max_images):.3f} s); load {args.load:g} workers' unbatched "
        f"work, so a community hour lasts {HOUR_S * scale:.1f} s; queue limits {args.max_per_user}/member, "
        f"{args.max_total} in all; failure rate {args.failure_rate:g}"
    )
    runs = [
        simulate(
            members,
            workers,
            timing=timing,
            scale=scale,
            max_images=args.max_images,
            max_per_owner=args.max_per_user,
            max_total=args.max_total,
            failure_rate=args.failure_rate,
            seed=args.seed,
        )
        for workers in range(1, args.max_workers + 1)
    ]
    print(
        "\nwait = accepted to started; refused = share of sends the queue refused; "
        "Jain = index over members of their mean slowdown"
    )
    print(
        f"{'workers':>7} {'GPU util':>8} {'Jain':>5} {'img/batch':>9}  {'class':<8} {'jobs':>6} {'refused':>7} "
        f"{'p50':>9} {'p95':>9} {'p99':>9}"
    )
    for run in runs:
        for index, figures in enumerate(run.classes):
            head = f"{run.workers:>7} {run.utilisation:>8.3f} {run.fairness:>5.3f} {run.images_per_batch:>9.2f}"
            print(
                f"{head if index == 0 else '':<32}  {figures.name:<8} {figures.jobs:>6} {figures.refused:>7.1%} "
                f"{seconds(figures.p50):>9} {seconds(figures.p95):>9} {seconds(figures.p99):>9}"
            )
    if args.failure_rate > 0:
        print("failed jobs (each sent again): " + ", ".join(f"{run.failed} at {run.workers}" for run in runs))
    title = (
        f"Simulated community (seed {args.seed}, load {args.load:g}), batch {timing.batch_s:.3f} s + "
        f"{timing.image_s:.4f} s/image: dotted p50, dashed p95, solid p99"
    )
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    # Waits under a tenth of a 1-image batch are drawn at the decade below it: nobody notices them.
    floor = 10 ** math.floor(math.log10(timing.seconds(1) / 10))
    args.svg.write_text(svg(runs, title, floor))
    print(f"\nfigure: {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
