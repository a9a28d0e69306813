"""Each model's licence, and whether it allows commercial use, told without loading a weight or the network.

An owner who runs the bot commercially (``COMMERCIAL_USE``) needs to know, before a model is ever loaded,
whether its licence allows that; moderators see it in ``/model list``. Where a licence is read from, in order:

1. **the model card**: a local diffusers folder's ``README.md``, or a hub model's from this host's Hugging
   Face cache (never the network), by its YAML front matter's ``license:`` (and ``license_name:`` where that is
   ``other``), as the Hub reads it; a single ``.safetensors`` file's ``modelspec.license`` metadata;
2. **a known release**: the hub ids below, each with where its licence was read;
3. otherwise **unknown**.

The builtin tiny models are random weights this project makes: MIT, as the project. A fine-tune's card
(its own or its folder's) wins over its base model's release, which is why only a hub id is looked up among
the known releases: a local folder or file without a card could be anything.

The front matter is read by hand, not by a YAML parser: only three top-level keys are wanted, and PyYAML is
in the virtual environment only as a dependency of huggingface_hub and transformers (huggingface_hub's own
``metadata_load`` would pull in its HTTP client with it). The module imports neither torch nor diffusers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final

from models.errors import ModelError
from models.sources import SourceKind, resolve_model_source
from models.tiny import TINY_MODEL_ID
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID


class Commercial(StrEnum):
    """Whether a licence allows using the model commercially (a paid service, a business's own use)."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class LicenceSource(StrEnum):
    """Where a model's licence was read: its card (or a single file's metadata), the known releases, nowhere."""

    MODEL_CARD = "model card"
    KNOWN_RELEASE = "known release"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Licence:
    """A model's licence: its id as a model card writes it ("apache-2.0", "openrail++", or a card's
    ``license_name`` such as "flux-non-commercial-license"), its name as people read it, whether it allows
    commercial use, and where it was read."""

    id: str
    name: str
    commercial: Commercial
    source: LicenceSource

    @property
    def known(self) -> bool:
        """Whether any licence was found at all (an unknown one is refused where commercial use is on)."""
        return self.source is not LicenceSource.UNKNOWN


UNKNOWN_LICENCE: Final = Licence("unknown", "unknown licence", Commercial.UNKNOWN, LicenceSource.UNKNOWN)


@dataclass(frozen=True, slots=True)
class _Terms:
    name: str
    commercial: Commercial


#: Licence ids as the Hub's model cards write them (its list of licence identifiers, lower case).
#: The OpenRAIL licences allow commercial use, under use restrictions that a derivative and a service's
#: users must be held to as well; the FLUX ones allow only non-commercial use of the weights.
_TERMS: Final[Mapping[str, _Terms]] = MappingProxyType(
    {
        "apache-2.0": _Terms("Apache-2.0", Commercial.YES),
        "mit": _Terms("MIT", Commercial.YES),
        "bsd-2-clause": _Terms("BSD-2-Clause", Commercial.YES),
        "bsd-3-clause": _Terms("BSD-3-Clause", Commercial.YES),
        "cc0-1.0": _Terms("CC0-1.0", Commercial.YES),
        "cc-by-4.0": _Terms("CC-BY-4.0", Commercial.YES),
        "cc-by-sa-4.0": _Terms("CC-BY-SA-4.0", Commercial.YES),
        "cc-by-nc-4.0": _Terms("CC-BY-NC-4.0", Commercial.NO),
        "cc-by-nc-sa-4.0": _Terms("CC-BY-NC-SA-4.0", Commercial.NO),
        "cc-by-nc-nd-4.0": _Terms("CC-BY-NC-ND-4.0", Commercial.NO),
        "openrail": _Terms("OpenRAIL", Commercial.YES),
        "creativeml-openrail-m": _Terms("CreativeML OpenRAIL-M", Commercial.YES),
        "openrail++": _Terms("CreativeML OpenRAIL++-M", Commercial.YES),
        # `license: other` with one of these as its `license_name:`.
        "flux-non-commercial-license": _Terms("FLUX Non-Commercial License", Commercial.NO),
        "flux-1-dev-non-commercial-license": _Terms("FLUX.1 [dev] Non-Commercial License", Commercial.NO),
    }
)

#: The models this project builds from configurations, with random weights: the project's own licence.
_BUILTIN = (TINY_MODEL_ID, TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID)

#: Known releases, by hub id (looked up without regard to case, as the Hub resolves ids): the licence id their
#: card gives. The Hub itself was out of reach when these were written, so each source below is what a
#: documentation search found of the card (its page or a copy of it) or the publisher's own table:
_KNOWN_RELEASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # SD 1.5: "License: creativeml-openrail-m" on runwayml/stable-diffusion-v1-5's page and its card's front
        # matter (huggingface.co/runwayml/stable-diffusion-v1-5, README.md). The stable-diffusion-v1-5
        # organisation's copy (the default SD_MODEL) is a community mirror made after Runway deleted its
        # organisation in August 2024, listed under CreativeML Open RAIL-M by a wiki page on the release
        # (aiwiki.ai, "runwayml/stable-diffusion-v1-5"); its own card's front matter could not be read here.
        "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
        "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
        # SD 2.1 and SDXL: "license: openrail++" in the cards' front matter (huggingface.co/stabilityai/
        # stable-diffusion-2-1/blob/…/README.md, …/stable-diffusion-2-1-base/blob/…/README.md) and
        # "License: openrail++" on stabilityai/stable-diffusion-xl-base-1.0's pages.
        "stabilityai/stable-diffusion-2-1": "openrail++",
        "stabilityai/stable-diffusion-2-1-base": "openrail++",
        "stabilityai/stable-diffusion-xl-base-1.0": "openrail++",
        # FLUX.2 [klein]: Black Forest Labs' own table (github.com/black-forest-labs/flux2, README "Model
        # Overview"): 4B and 4B Base apache-2.0; 9B, 9B KV and 9B Base the FLUX Non-Commercial License, as is
        # FLUX.2 [dev]. The repositories are FLUX.2-klein-4B, FLUX.2-klein-base-4B, FLUX.2-klein-9B,
        # FLUX.2-klein-base-9B and FLUX.2-klein-9b-kv (their Hub pages, as linked from copies of them). The
        # 9B cards' `license_name:` is written here as "flux-non-commercial-license", which could not be
        # read from the cards themselves; copies of the 9B's LICENSE.md are "FLUX Non-Commercial License v2.1".
        "black-forest-labs/flux.2-klein-4b": "apache-2.0",
        "black-forest-labs/flux.2-klein-base-4b": "apache-2.0",
        "black-forest-labs/flux.2-klein-9b": "flux-non-commercial-license",
        "black-forest-labs/flux.2-klein-base-9b": "flux-non-commercial-license",
        "black-forest-labs/flux.2-klein-9b-kv": "flux-non-commercial-license",
        "black-forest-labs/flux.2-dev": "flux-non-commercial-license",
        # FLUX.1: [dev] under the FLUX.1 [dev] Non-Commercial License (its LICENSE.md, huggingface.co/
        # black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md, which derivative cards name as
        # `license_name: flux-1-dev-non-commercial-license`); [schnell] Apache-2.0 (as providers that host it
        # say; its own card could not be read here). Latentcord runs neither, but a configured one is still
        # refused by its licence before its pipeline is.
        "black-forest-labs/flux.1-dev": "flux-1-dev-non-commercial-license",
        "black-forest-labs/flux.1-schnell": "apache-2.0",
        # Z-Image-Turbo: "License: apache-2.0" on huggingface.co/Tongyi-MAI/Z-Image-Turbo's pages.
        "tongyi-mai/z-image-turbo": "apache-2.0",
    }
)


def licence_of(model: str) -> Licence:
    """``model``'s licence (a hub id, a folder, a ``.safetensors`` file or a builtin), from its card, the
    known releases or neither; never raises for a model that cannot load (its licence is then unknown)."""
    if model in _BUILTIN:
        return _licence("mit", LicenceSource.KNOWN_RELEASE)
    try:
        source = resolve_model_source(model)
    except ModelError:
        return UNKNOWN_LICENCE
    match source.kind:
        case SourceKind.FOLDER:
            found = _card_licence(_read_text(Path(source.location) / "README.md"))
        case SourceKind.SINGLE_FILE:
            found = _file_licence(Path(source.location))
        case SourceKind.HUB:
            found = _card_licence(_cached_hub_text(source.location, "README.md"))
            if found is None and source.location.casefold() in _KNOWN_RELEASES:
                found = _licence(_KNOWN_RELEASES[source.location.casefold()], LicenceSource.KNOWN_RELEASE)
        case _:
            found = None
    return found or UNKNOWN_LICENCE


def known_releases() -> Mapping[str, Licence]:
    """The known releases by hub id (lower case) with their licences, for a table of them."""
    return {model: _licence(licence, LicenceSource.KNOWN_RELEASE) for model, licence in _KNOWN_RELEASES.items()}


def _licence(licence_id: str, source: LicenceSource) -> Licence:
    """A licence by its id; one not in the table is named by its id, and counted as non-commercial only where
    its id says so ("...-non-commercial-...", "cc-by-nc-...")."""
    key = licence_id.casefold()
    terms = _TERMS.get(key)
    if terms is not None:
        return Licence(key, terms.name, terms.commercial, source)
    says_non_commercial = "non-commercial" in key or "noncommercial" in key or key.startswith("cc-by-nc")
    return Licence(licence_id, licence_id, Commercial.NO if says_non_commercial else Commercial.UNKNOWN, source)


# -- a model card's front matter -----------------------------------------------------------------------------

# The card's YAML front matter: a first line of ---, the block, a line of --- (as the Hub's REGEX_YAML_BLOCK).
_FRONT_MATTER = re.compile(r"\A\ufeff?\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_CARD_KEYS = ("license", "license_name")


def _card_licence(card: str | None) -> Licence | None:
    """The licence a card's front matter declares: ``license:``, or its ``license_name:`` where that is
    ``other``; None where the card (or its ``license:``) is missing."""
    if card is None:
        return None
    fields = _front_matter(card)
    licence = fields.get("license")
    if not licence:
        return None
    if licence.casefold() == "other":
        name = fields.get("license_name")
        if not name:
            return Licence("other", "a licence its card does not name", Commercial.UNKNOWN, LicenceSource.MODEL_CARD)
        return _licence(name, LicenceSource.MODEL_CARD)
    return _licence(licence, LicenceSource.MODEL_CARD)


def _front_matter(card: str) -> dict[str, str]:
    """The top-level ``license`` and ``license_name`` of a card's YAML front matter, as plain strings.

    A value is a scalar on its key's line (quoted or not, a ``# comment`` after it dropped) or, on the lines
    below an empty one, a list (``- mit``): a list of several is kept whole ("mit, apache-2.0"), so that no
    one licence of it is taken for all of them.
    """
    match = _FRONT_MATTER.match(card)
    if match is None:
        return {}
    lines = match.group(1).splitlines()
    fields: dict[str, str] = {}
    for index, line in enumerate(lines):
        key, colon, rest = line.partition(":")
        if not colon or key not in _CARD_KEYS:  # nested keys start with a space and never match
            continue
        value = _scalar(rest)
        if not value:
            items = []
            for following in lines[index + 1 :]:
                item = following.strip()
                if not item.startswith("- "):
                    break
                items.append(_scalar(item[2:]))
            value = ", ".join(item for item in items if item)
        if value and value[0] not in "|>[{&*!":  # a block, flow collection, anchor or tag: not read here
            fields[key] = value
    return fields


def _scalar(raw: str) -> str:
    """A plain or quoted YAML scalar, without a ``# comment`` after it."""
    text = raw.strip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        return text[1:end].strip() if end > 0 else ""
    return re.sub(r"(?:^|\s+)#.*\Z", "", text).strip()


# -- where the card is -----------------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None


def _cached_hub_text(repo_id: str, name: str) -> str | None:
    """A hub model's file from this host's Hugging Face cache only (as ``models.presets`` reads its JSON)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, name)
    except ValueError:  # an id the Hub would refuse (huggingface_hub's HFValidationError)
        return None
    return _read_text(Path(found)) if isinstance(found, str) else None


def _file_licence(path: Path) -> Licence | None:
    """A single ``.safetensors`` file's ``modelspec.license`` (Stability AI's model-spec metadata), read by
    the safetensors library from the header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as file:
            metadata = file.metadata() or {}
    except (SafetensorError, OSError):
        return None
    licence = str(metadata.get("modelspec.license", "")).strip()
    return _licence(licence, LicenceSource.MODEL_CARD) if licence else None
