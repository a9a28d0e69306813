"""The messages the bot and its GPU workers speak, and their bytes: the one module both halves import.

Every transport (a thread of the bot, child processes, Valkey or Redis Streams) carries the
same five messages, versioned:

* ``Ready``: a worker is up and has free slots (sent again while idle: its heartbeat);
* ``Run``: a formed batch, each job as a ``GenerationRequest`` with its attempt number and token;
* ``ProgressReport``: step k of n of a job, with a small preview; it may be lost;
  during a batch it is also the worker's heartbeat, sent from the step callback, so a
  hung GPU stops it;
* ``Result``: a batch's finished jobs (``JobOutput``: the grid, withheld images, timings,
  tokens), or the sentence it failed with;
* ``Cancel``: stop these jobs.

A ``GenerationRequest`` is complete: the bot (``bot.jobs.generation``) has translated its job
into the model's terms (the operation and batch key, each image's prompt, negative prompt and
seed, embedding tokens and weighted-prompt syntax done, input images by role, an edit's canvas
and mask made), so a worker only runs it and never sees the bot's recipe, policy or database.

``encode``/``decode`` turn them into msgpack bytes and back (msgspec): plain data only, never
pickle, so nothing a broker or a peer sends can run code here. The protocol's version is not
kept by hand: ``PROTOCOL_VERSION`` is a hash of every field name and type of the messages and
of what they carry (the request, the presets, a job's output ...), computed at import, so a
change a peer would misread cannot ship without the version changing. Each message names its
version; one from a peer on another version is refused with a sentence naming both, and so is
one with a field this side does not know or without one it needs: never half-read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

import msgspec

from bot.images.encoding import EncodedImage
from models.types import BatchSpec, ModelPreset


class ProtocolMismatch(Exception):
    """A message this side refuses, in one sentence: from a peer on another protocol version, with a
    field this side does not know or without one it needs, or not a message at all."""


class VersionMismatch(ProtocolMismatch):
    """From a peer on another protocol version. ``sender`` and ``boot`` name the worker that sent it, when
    the message says (a worker's messages do, whatever their version), so the bot can tell it in turn."""

    def __init__(self, sentence: str, *, sender: str | None = None, boot: str | None = None) -> None:
        super().__init__(sentence)
        self.sender = sender
        self.boot = boot


class Side(StrEnum):
    """Who reads a message: the bot (from workers) or a worker (from the bot); a refusal is worded from there."""

    BOT = "bot"
    WORKER = "worker"


# ---------------------------------------------------------------------- a job, as a worker runs it


class ImageRole(StrEnum):
    """What an input image is for."""

    SOURCE = "source"  # what img2img, an upscale or an edit starts from (an edit's canvas, already laid out)
    MASK = "mask"  # an edit's mask: white where the image is drawn anew
    REFERENCE = "reference"  # an image that guides a referenced call, in order (after the source it edits)


@dataclass(frozen=True, slots=True, eq=False)
class InputImage:
    role: ImageRole
    data: bytes  # an encoded image (PNG, or the file a member gave)


@dataclass(frozen=True, slots=True)
class ImagePrompt:
    """One image of a job, in the model's terms: embedding tokens and weighted-prompt syntax already translated."""

    prompt: str
    negative_prompt: str
    seed: int


@dataclass(frozen=True, slots=True, eq=False)
class GenerationRequest:
    """One job, complete: all a worker needs to make its images and their grid, and nothing of the bot's.

    ``spec`` is the batch key: jobs whose specs are equal share one pipeline call. ``parameters`` is
    the text written into the grid file (named ``stem``); ``names`` gives, by file hash, the name its
    guild gave each LoRA or embedding, for a sentence about one that cannot be applied.
    """

    job_id: int
    spec: BatchSpec
    images: tuple[ImagePrompt, ...]
    inputs: tuple[InputImage, ...] = ()
    classify: bool = True  # classify the images and withhold (blur) what is flagged
    parameters: str = ""
    stem: str = "grid"
    names: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(image.seed for image in self.images)

    def input(self, role: ImageRole) -> bytes | None:
        """The encoded input image of ``role``, if the job has one."""
        return next((image.data for image in self.inputs if image.role == role), None)

    def inputs_of(self, role: ImageRole) -> tuple[bytes, ...]:
        """Every encoded input image of ``role``, in order (a job's references)."""
        return tuple(image.data for image in self.inputs if image.role == role)


@dataclass(frozen=True, slots=True, eq=False)
class JobOutput:
    """A job's result as a worker made it, for the attempt it was given (``attempt``, ``token``).

    ``grid`` is a lossless PNG of every image (``bot.images.grid``), withheld ones blurred: what
    is posted, and what each image's own file is cut from. ``withheld`` indexes the images, one
    per seed.
    """

    job_id: int
    attempt: int
    token: str
    grid: EncodedImage
    withheld: tuple[int, ...]
    seeds: tuple[int, ...]
    # "queued_s": waiting time, "generation_s": time on the GPU of the batch it ran in, "finishing_s".
    timings: Mapping[str, float] = field(default_factory=dict)
    # What a job wrote instead of drawing (/describe's four prompts); its grid is then the picture it read.
    texts: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many images the grid holds."""
        return len(self.seeds)


# ---------------------------------------------------------------------- the five messages


@dataclass(frozen=True, slots=True)
class Ready:
    worker_id: str
    boot_id: str  # new each time the worker process starts: a changed one means its jobs were lost
    free_slots: int
    models: tuple[str, ...]  # loaded now
    max_batch_images: int
    free_vram_bytes: int | None = None
    # Each model loaded since the last Ready, and the seconds its load took (the bot's metrics count them).
    load_seconds: dict[str, float] = field(default_factory=dict)
    received: int = 0  # ``Run`` messages received since boot: the bot counts its own in flight against it
    presets: tuple[ModelPreset, ...] = ()  # of the models it serves: what admission needs to know
    # Each model's tokenizer files, sent once per boot, so the bot counts tokens without the model.
    tokenizers: dict[str, dict[str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class RunJob:
    request: GenerationRequest
    attempt: int
    token: str


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    batch_id: str
    jobs: tuple[RunJob, ...]
    nsfw_threshold: float
    preview_interval_s: float
    queued_at: dict[int, float] = field(default_factory=dict)  # job id -> seconds it waited before this batch


@dataclass(frozen=True, slots=True, eq=False)
class ProgressReport:
    worker_id: str
    boot_id: str
    batch_id: str
    job_id: int | None  # None: a heartbeat only (loading a model, say)
    step: int = 0
    total: int = 0
    preview: bytes | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Result:
    worker_id: str
    boot_id: str
    batch_id: str
    outputs: tuple[JobOutput, ...]
    error: str | None = None  # one sentence for the users when the whole batch failed
    cancelled: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Cancel:
    job_ids: tuple[int, ...]


Message = Ready | Run | ProgressReport | Result | Cancel
MessageSink = Callable[[Message], None]


# ---------------------------------------------------------------------- bytes on the wire

#: How a message is laid out, in words: a change of layout changes these words, and so the version.
FRAMING = "msgpack map: type (the class's name), protocol (the version), then every field by name; dataclasses as maps"
#: What a refusal asks of whoever runs the two sides.
SAME_VERSION = "run the same version of Latentcord on the bot and every worker"


class _Header(msgspec.Struct):
    """What any version's message says about itself (worker_id and boot_id: when a worker sent it)."""

    protocol: Any = None
    type: Any = None
    worker_id: Any = None
    boot_id: Any = None


class _Shapes:
    """The messages' field annotations, walked once: a text naming every field and type, whose hash is the
    version, and for each dataclass a msgspec Struct of the same fields that refuses any other field."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}  # a dataclass's name -> "Name{field:type,...}"
        self._structs: dict[type, type[msgspec.Struct]] = {}

    def message(self, cls: type) -> type[msgspec.Struct]:
        """The strict Struct of a message: its fields, tagged with its name, and the version it speaks."""
        return self._struct(cls, tagged=True)

    def _struct(self, cls: type, *, tagged: bool = False) -> type[msgspec.Struct]:
        known = self._structs.get(cls)
        if known is not None:
            return known
        if cls.__name__ in self.texts:
            raise TypeError(f"two types named {cls.__name__} cross to workers: rename one, the version names them")
        hints = typing.get_type_hints(cls)
        members: list[tuple[str, Any]] = [("protocol", str)] if tagged else []
        texts = []
        for each in dataclasses.fields(cls):
            text, annotation = self._shape(hints[each.name])
            members.append((each.name, annotation))
            texts.append(f"{each.name}:{text}")
        self.texts[cls.__name__] = f"{cls.__name__}{{{','.join(texts)}}}"
        struct = self._structs[cls] = msgspec.defstruct(
            f"Wire{cls.__name__}",
            members,
            forbid_unknown_fields=True,
            tag_field="type" if tagged else None,
            tag=cls.__name__ if tagged else None,
        )
        return struct

    def _shape(self, hint: Any) -> tuple[str, Any]:
        """A type's text and its strict annotation (dataclasses become their Structs)."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint in (int, float, str, bytes, bool):
            return hint.__name__, hint
        if hint is None or hint is type(None):
            return "None", None
        if isinstance(hint, type) and issubclass(hint, Enum):
            return f"{hint.__name__}({'|'.join(str(member.value) for member in hint)})", hint
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return hint.__name__, self._struct(hint)
        if origin in (types.UnionType, typing.Union):
            shapes = [self._shape(arg) for arg in args]
            return "|".join(sorted(text for text, _ in shapes)), typing.Union[tuple(shape for _, shape in shapes)]  # noqa: UP007
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            text, item = self._shape(args[0])
            return f"tuple[{text},...]", tuple[item, ...]  # type: ignore[valid-type]
        if origin is tuple:
            shapes = [self._shape(arg) for arg in args]
            return f"tuple[{','.join(text for text, _ in shapes)}]", tuple[tuple(shape for _, shape in shapes)]  # type: ignore[misc]
        if origin in (dict, Mapping) and len(args) == 2:
            (key_text, key), (value_text, value) = self._shape(args[0]), self._shape(args[1])
            return f"dict[{key_text},{value_text}]", dict[key, value]  # type: ignore[valid-type]
        raise TypeError(f"{hint!r} cannot cross to a worker: give the field a type the wire carries")


#: The five messages, by the name each travels under.
MESSAGES: dict[str, type[Message]] = {cls.__name__: cls for cls in (Ready, Run, ProgressReport, Result, Cancel)}


def _derive() -> tuple[str, dict[type[msgspec.Struct], type[Message]]]:
    shapes = _Shapes()
    structs = {shapes.message(cls): cls for cls in MESSAGES.values()}
    text = "\n".join([FRAMING, ",".join(MESSAGES), *sorted(shapes.texts.values())])
    return hashlib.sha256(text.encode()).hexdigest()[:12], structs


#: This side's version: a hash over the messages' shapes, the same on every host that runs the same code.
PROTOCOL_VERSION, _STRUCTS = _derive()
_FIELDS = {cls: tuple(each.name for each in dataclasses.fields(cls)) for cls in MESSAGES.values()}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(typing.Union[tuple(_STRUCTS)])  # noqa: UP007
_header_decoder = msgspec.msgpack.Decoder(_Header)


def encode(message: Message) -> bytes:
    """A message as msgpack: its type, this side's version, then its fields (nested dataclasses as maps)."""
    cls = type(message)
    body = {name: getattr(message, name) for name in _FIELDS[cls]}
    return _encoder.encode({"type": cls.__name__, "protocol": PROTOCOL_VERSION, **body})


def decode(data: bytes, *, reader: Side = Side.BOT) -> Message:
    """The message ``data`` holds; ``ProtocolMismatch`` (a sentence for ``reader``'s log) when it is refused."""
    try:
        wire = _decoder.decode(data)
    except msgspec.MsgspecError as error:
        raise _refusal(data, reader, error) from None
    if wire.protocol != PROTOCOL_VERSION:
        raise _refusal(data, reader, None)
    return msgspec.convert(wire, _STRUCTS[type(wire)], from_attributes=True)


def refusal_notice() -> bytes:
    """What a side sends a peer it refused for its version: only this side's version, which the peer's
    decoder (of any version) refuses in turn, so the peer's log says why as well."""
    return _encoder.encode({"protocol": PROTOCOL_VERSION})


def _refusal(data: bytes, reader: Side, error: msgspec.MsgspecError | None) -> ProtocolMismatch:
    """The one sentence a message is refused with, naming both versions when it names its own."""
    peer = "the bot" if reader == Side.WORKER else "a worker"
    try:
        header = _header_decoder.decode(data)
    except msgspec.MsgspecError as undecodable:
        return ProtocolMismatch(f"Refused a message from {peer}: it is not a worker message ({_short(undecodable)}).")
    sender = _shown(header.worker_id) if reader == Side.BOT and header.worker_id is not None else None
    if sender is not None:
        peer = f"worker {sender}"
    theirs = _shown(header.protocol)
    if header.protocol != PROTOCOL_VERSION:
        return VersionMismatch(
            f"Refused {peer}: it speaks worker protocol {theirs} and this {reader} speaks {PROTOCOL_VERSION}; "
            f"{SAME_VERSION}.",
            sender=sender,
            boot=_shown(header.boot_id) if header.boot_id is not None else None,
        )
    kind = _shown(header.type) if isinstance(header.type, str) else "message"
    return ProtocolMismatch(
        f"Refused a {kind} from {peer} that this {reader} cannot read ({_short(error)}), although both speak "
        f"worker protocol {PROTOCOL_VERSION}; {SAME_VERSION}."
    )


_PLAIN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _shown(value: object) -> str:
    """A value a peer sent, fit for a log line: as it is when plain, else quoted and cut short."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else repr(value)
    return text if _PLAIN.fullmatch(text) else repr(text[:64])


def _short(error: BaseException | None) -> str:
    """An error's text on one line, cut short: it may quote what a peer sent."""
    return " ".join(str(error).split())[:300]
