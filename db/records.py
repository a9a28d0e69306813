"""Value objects the store hands out and takes in.

They are plain frozen dataclasses so that callers in ``bot/`` and ``cogs/``
never see a database row, and so the schema can change without every caller
changing with it. Times are unix seconds (floats) from the store's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

R = TypeVar("R")  # the application's recipe: a dataclass whose fields are columns of jobs

#: The guild id the ledger and quota tables use for direct messages, which have
#: no guild. Jobs keep ``guild_id=None`` for DMs; only quotas need a number,
#: because a (guild, user) pair is the key of a quota window.
DM_GUILD_ID = 0

#: Interaction tokens let the bot edit its reply for 15 minutes; after that they
#: are useless, so keeping them longer only keeps a secret around for nothing.
INTERACTION_TOKEN_LIFETIME_S = 15 * 60

#: The highest quota a moderator may set; anything above is a typo, not a policy.
MAX_CREDITS = 1_000_000

#: What a job's prompt reads once its member deleted their data (/privacy delete).
DELETED_PROMPT = "(deleted)"

#: Longest filter term the store accepts (the caller normalises it first).
MAX_FILTER_TERM_LENGTH = 64


class Delivery(StrEnum):
    """Where a finished job's result stands with Discord (``''`` while there is none)."""

    NONE = ""
    PENDING = "pending"
    DELIVERED = "delivered"
    ABANDONED = "abandoned"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AuditAction(StrEnum):
    """What a moderator changed; the value is what the audit table stores."""

    NSFW_MODE = "nsfw_mode"
    DAILY_CREDITS = "daily_credits"
    LOG_CHANNEL = "log_channel"
    FILTER_TERM_ADDED = "filter_term_added"
    FILTER_TERM_REMOVED = "filter_term_removed"
    QUOTA_OVERRIDE_SET = "quota_override_set"
    QUOTA_OVERRIDE_CLEARED = "quota_override_cleared"
    USAGE_RESET = "usage_reset"
    FINE_TUNE_ADDED = "fine_tune_added"
    FINE_TUNE_REMOVED = "fine_tune_removed"
    MODEL_ENABLED = "model_enabled"
    MODEL_DISABLED = "model_disabled"
    STYLE_ADDED = "style_added"
    STYLE_REMOVED = "style_removed"
    MOODBOARD_ADDED = "moodboard_added"
    MOODBOARD_REMOVED = "moodboard_removed"
    PERMUTATIONS = "permutations"
    DRAFT_MODE = "draft_mode"
    STARBOARD = "starboard"
    #: A member deleted their data (/privacy delete): the entry says so, never what was deleted.
    MEMBER_DATA_DELETED = "member_data_deleted"


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A guild's moderator settings; a guild nobody configured gets the defaults.

    ``daily_credits=None`` means "use the global default from the bot's settings".
    """

    guild_id: int
    nsfw_mode: str = "block"
    daily_credits: int | None = None
    log_channel_id: int | None = None
    permutations: int | None = None  # jobs one /imagine may make; None: the bot's default
    draft_channels: frozenset[int] = frozenset()  # channels in draft mode (/draft): fast previews
    starboard_channel_id: int | None = None  # where results reaching the ⭐ threshold are reposted (/starboard)
    starboard_threshold: int | None = None  # the ⭐ a result needs there; None: the bot's default


@dataclass(frozen=True, slots=True)
class FineTune:
    """A file a guild's moderators approved under a name: a LoRA (with its default weight) or an embedding."""

    guild_id: int
    name: str
    kind: str  # "lora" or "embedding"
    sha256: str
    family: str
    weight: float = 1.0
    nsfw: bool = False


@dataclass(frozen=True, slots=True)
class Style:
    """A guild's named style: ``prompt`` holds ``{prompt}`` where the member's text goes."""

    guild_id: int
    name: str
    prompt: str
    negative: str = ""


@dataclass(frozen=True, slots=True)
class Moodboard:
    """A guild's named set of reference pictures (``--mood name``), each a kept picture's path, in order.

    ``nsfw``: the moderators marked it so, and like an NSFW LoRA it may be used only where NSFW is allowed.
    """

    guild_id: int
    name: str
    nsfw: bool
    images: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberPreferences:
    """A member's own switches and defaults (``/settings``); ``None``: the server's default."""

    user_id: int
    remix: bool = False  # buttons that make a job first open a window to edit its prompt
    model: str | None = None
    aspect: str | None = None
    steps: int | None = None
    guidance: float | None = None
    count: int | None = None
    negative: str | None = None
    style: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One moderator change: who did what to which setting, and the values either side.

    ``target`` says what inside the guild was changed when the action alone does
    not (``"user:<id>"`` or ``"role:<id>"`` for quotas); ``before``/``after`` are
    text a moderator can read, ``None`` where there was or is nothing.
    """

    id: int
    guild_id: int
    actor_id: int
    action: str
    target: str | None
    before: str | None
    after: str | None
    at: float


@dataclass(frozen=True, slots=True)
class QuotaRule:
    """How to find a user's daily credits when admitting a job: their roles, and the bot-wide default.

    The store resolves it as ``Store.quota_limit`` does: the user's override, else their most
    generous role's, else the guild's daily credits, else ``default``.
    """

    role_ids: tuple[int, ...]
    default: int


@dataclass(frozen=True, slots=True)
class QuotaOverride:
    """A moderator's limit for one user or one role; exactly one of the ids is set."""

    guild_id: int
    user_id: int | None
    role_id: int | None
    credits: int
    set_by: int
    set_at: float


@dataclass(frozen=True, slots=True)
class Usage:
    """What a user has spent in the rolling window, and when some of it comes back.

    ``next_free_at`` is when the oldest credits still counted leave the window
    (``None`` when nothing is counted) and ``next_free_credits`` how many do.
    """

    used: int
    next_free_at: float | None
    next_free_credits: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob(Generic[R]):
    """A job the service has validated and wants charged and queued.

    ``recipe`` is everything that determines its images: a dataclass the application owns,
    whose fields are columns of ``jobs`` (mapped by ``db.rows``, never copied by hand), so a
    new field needs a migration and nothing here. ``guild_id`` is ``None`` in direct messages.
    ``nsfw_allowed`` (the NSFW decision made at admission) is kept so that a job requeued after
    a restart is filtered exactly as admitted; it defaults to the safe answer.
    """

    recipe: R
    guild_id: int | None
    channel_id: int | None
    user_id: int
    cost: int
    nsfw_allowed: bool = False
    #: Asked for in an age-restricted channel (or a thread of one): no gallery shows it. None: not known (a job made
    #: before schema 16 in a channel the bot has not seen since, or one admitted without saying), not shown either.
    age_restricted: bool | None = None
    #: The requester's display name when they asked (the gallery's "made by"); "" where none is known.
    member_name: str = ""

    def __post_init__(self) -> None:
        if self.cost < 0:
            raise ValueError("A job cannot cost a negative number of credits.")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord(NewJob[R]):
    """A job as stored: its recipe and admission (the fields of ``NewJob``), where it is in its
    life, and what it was charged.

    ``charged`` is the credits taken when it was admitted (written once, so a job
    requeued after a crash is never charged again); ``refunded`` is what has been
    given back against that charge since (refunds and moderator resets), so
    ``charged - refunded`` is what the job still costs its user.
    """

    id: int
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    image_paths: tuple[str, ...]
    withheld: tuple[int, ...]
    timings: Mapping[str, float]
    error: str | None
    message_id: int | None
    interaction_token: str | None
    token_created_at: float | None
    charged: int
    refunded: int
    delivery: str = ""
    delivery_attempts: int = 0
    delivery_started_at: float | None = None
    result_message_id: int | None = None
    attempt: int = 0
    attempt_token: str | None = None
    worker_id: str | None = None
    #: When the member or a moderator deleted its posted result (Delete, ❌); its picture goes once no job needs it.
    result_deleted_at: float | None = None
    #: What it wrote instead of drawing: /describe's four prompts.
    texts: tuple[str, ...] = ()
    #: When its member deleted their data (/privacy delete): prompts cleared, files gone, never shown again.
    deleted_by_member_at: float | None = None


@dataclass(frozen=True, slots=True)
class StarboardClaim:
    """A result whose ⭐ (its requester's not counted) just reached its guild's threshold: repost it, once.

    The store claimed the repost in the same transaction as the star, so no other star, now or after a
    restart, claims it again; ``Store.starboard_posted`` records the message, ``release_starboard`` gives
    the claim back when the repost could not be sent.
    """

    job_id: int
    guild_id: int
    channel_id: int  # the starboard channel
    stars: int


@dataclass(frozen=True, slots=True)
class MemberDataDeleted:
    """What ``Store.forget_member`` did: how many jobs it anonymised, and the guilds whose audit log says so."""

    jobs: int
    guild_ids: tuple[int, ...]
