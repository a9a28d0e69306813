"""Rows from dataclasses and back, derived from the dataclass fields: nothing is copied by hand.

A field maps to the column of the same name. Its annotation says how the value is kept:

* ``int``, ``float``, ``str`` as they are; ``bool`` as 0 or 1;
* a ``StrEnum`` by its value;
* ``tuple[int, ...]``, ``tuple[str, ...]`` and ``Mapping[str, float]`` as JSON text;
* ``X | None`` as ``X``'s form, or NULL.

The columns a dataclass gets are plain SQL values (int, float, str or None), so the same
mapping serves anything that must carry a value as plain data, such as a message to a worker
process. A NULL read back for a field that has a default gets the default, so a column added
by a migration may be NULL in old rows. Adding a field to a mapped dataclass therefore needs a
migration that adds its column, and nothing here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

SqlValue = int | float | str | None


class Row(Protocol):
    """What is read back: a ``sqlite3.Row``, or a plain dict."""

    def keys(self) -> Iterable[str]: ...

    def __getitem__(self, key: str, /) -> Any: ...


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclasses.dataclass(frozen=True, slots=True)
class _Codec:
    encode: Callable[[Any], SqlValue]
    decode: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Column:
    name: str
    codec: _Codec | None  # None for a field typed by a type variable: the caller maps it
    default: Any  # dataclasses.MISSING when the field has none


def _same(value: Any) -> Any:
    return value


def _json_tuple(item: type) -> _Codec:
    return _Codec(
        encode=lambda value: json.dumps([item(part) for part in value]),
        decode=lambda text: tuple(item(part) for part in json.loads(text)),
    )


def _codec_for(hint: Any) -> tuple[_Codec, bool]:
    """How a field of type ``hint`` is kept, and whether it may be NULL."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(members) != 1:
            raise TypeError(f"a column holds one type or None, not {hint!r}")
        codec, _ = _codec_for(members[0])
        return codec, True
    if hint is bool:
        return _Codec(encode=int, decode=bool), False
    if hint in (int, str):
        return _Codec(encode=_same, decode=hint), False
    if hint is float:
        return _Codec(encode=float, decode=float), False
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return _Codec(encode=lambda member: str(hint(member)), decode=hint), False
    args = typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, str):
        return _json_tuple(args[0]), False
    if origin is Mapping and args == (str, float):
        return _Codec(encode=json.dumps, decode=lambda text: {k: float(v) for k, v in json.loads(text).items()}), False
    raise TypeError(f"no column type for {hint!r}")


def _or_null(inner: _Codec) -> _Codec:
    def encode(value: Any) -> SqlValue:
        return None if value is None else inner.encode(value)

    def decode(value: Any) -> Any:
        return None if value is None else inner.decode(value)

    return _Codec(encode=encode, decode=decode)


_KNOWN: dict[type, tuple[_Column, ...]] = {}


def _columns(cls: type) -> tuple[_Column, ...]:
    known = _KNOWN.get(cls)
    if known is None:
        known = _KNOWN[cls] = _columns_of(cls)
    return known


def _columns_of(cls: type) -> tuple[_Column, ...]:
    hints = typing.get_type_hints(cls)
    columns = []
    for field in dataclasses.fields(cls):
        if not _IDENTIFIER.fullmatch(field.name):  # the names go into SQL text
            raise TypeError(f"{cls.__name__}.{field.name} is not a plain column name")
        if isinstance(hints[field.name], TypeVar):
            columns.append(_Column(field.name, None, dataclasses.MISSING))
            continue
        codec, nullable = _codec_for(hints[field.name])
        if nullable:
            codec = _or_null(codec)
        columns.append(_Column(field.name, codec, _default_of(field)))
    return tuple(columns)


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def column_names(cls: type, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The columns ``cls`` maps to, in field order."""
    return tuple(column.name for column in _columns(cls) if column.name not in without)


def to_columns(value: Any, *, without: tuple[str, ...] = ()) -> dict[str, SqlValue]:
    """A dataclass instance as ``{column: SQL value}``, leaving out the fields named in ``without``."""
    row: dict[str, SqlValue] = {}
    for column in _columns(type(value)):
        if column.name in without:
            continue
        if column.codec is None:
            raise TypeError(f"{type(value).__name__}.{column.name} is mapped by the caller: leave it out")
        row[column.name] = column.codec.encode(getattr(value, column.name))
    return row


def from_columns(cls: type[T], row: Row, **given: Any) -> T:
    """An instance of ``cls`` from a row (a ``sqlite3.Row`` or a dict); fields in ``given`` are taken as they are."""
    keys = set(row.keys())
    values: dict[str, Any] = dict(given)
    for column in _columns(cls):
        if column.name in given:
            continue
        if column.codec is None:
            raise TypeError(f"{cls.__name__}.{column.name} is mapped by the caller: pass it")
        raw = row[column.name] if column.name in keys else None
        if raw is None and column.default is not dataclasses.MISSING:
            values[column.name] = column.default
        else:
            values[column.name] = column.codec.decode(raw)
    return cls(**values)
