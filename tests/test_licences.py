"""Each model's licence, read from its card, a known release or nowhere; COMMERCIAL_USE refusing start-up; /model list.

Model cards are written here as the Hub serves them (YAML front matter between two ``---`` lines), in
local folders and in a Hugging Face cache laid out as a download leaves it; start-up runs as a real
``python -m bot`` process, and /model list through the real bot and the fake Discord.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from safetensors.numpy import save_file

from bot.runtime.worker import commercial_use_refusals
from bot.settings import Settings, SettingsError
from models.engine import DiffusionEngine
from models.licences import Commercial, LicenceSource, known_releases, licence_of
from models.tiny import TINY_MODEL_ID
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

ROOT = Path(__file__).resolve().parent.parent
REVISION = "0123456789abcdef0123456789abcdef01234567"
FLUX_NON_COMMERCIAL = "---\nlicense: other\nlicense_name: flux-non-commercial-license\n---\n\n# A klein 9B copy\n"


def model_folder(parent: Path, name: str, card: str | None, pipeline: str = "Flux2KleinPipeline") -> Path:
    """A diffusers folder as far as start-up and /model list read one: its model_index.json and its card."""
    folder = parent / name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, with the network off; ``cache_card`` puts a repository's card in it."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub


def cache_card(hub: Path, repo_id: str, card: str) -> None:
    """``repo_id``'s README.md as a download leaves it: refs/main naming a snapshot that holds the file."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (snapshot / "README.md").write_text(card, encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


# -- where a licence is read ---------------------------------------------------------------------------------


def test_a_folder_s_card_names_its_licence(tmp_path: Path) -> None:
    apache = model_folder(tmp_path, "klein4b", "---\nlicense: apache-2.0\ntags:\n- text-to-image\n---\n# klein\n")
    licence = licence_of(str(apache))
    assert (licence.id, licence.name, licence.commercial, licence.source) == (
        "apache-2.0",
        "Apache-2.0",
        Commercial.YES,
        LicenceSource.MODEL_CARD,
    )
    licence = licence_of(str(model_folder(tmp_path, "klein9b", FLUX_NON_COMMERCIAL)))
    assert (licence.id, licence.name, licence.commercial, licence.source) == (
        "flux-non-commercial-license",
        "FLUX Non-Commercial License",
        Commercial.NO,
        LicenceSource.MODEL_CARD,
    )


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ('---\nlicense: "openrail++"  # as the Hub lists it\n---\n', ("openrail++", Commercial.YES)),
        ("\ufeff---\r\nlicense: MIT\r\n---\r\n", ("mit", Commercial.YES)),
        ("---\nlicense:\n- cc-by-nc-4.0\n---\n", ("cc-by-nc-4.0", Commercial.NO)),
        ("---\nlicense:\n- mit\n- cc-by-nc-4.0\n---\n", ("mit, cc-by-nc-4.0", Commercial.UNKNOWN)),
        ("---\nlicense: other\nlicense_name: acme-studio-terms\n---\n", ("acme-studio-terms", Commercial.UNKNOWN)),
        ("---\nlicense: other\nlicense_name: acme-non-commercial-v2\n---\n", ("acme-non-commercial-v2", Commercial.NO)),
        ("---\nlicense: other\n---\n", ("other", Commercial.UNKNOWN)),
    ],
)
def test_the_front_matter_is_read_as_the_hub_reads_it(tmp_path: Path, card: str, expected: tuple) -> None:
    licence = licence_of(str(model_folder(tmp_path, "model", card)))
    assert (licence.id, licence.commercial) == expected and licence.source is LicenceSource.MODEL_CARD


@pytest.mark.parametrize(
    "card",
    [
        None,  # no card at all
        "# A model\n\nlicense: apache-2.0\n",  # not front matter: the card's text
        "---\ntags:\n- text-to-image\nwidget:\n  license: mit\n---\n",  # no top-level license
        "---\nlicense: apache-2.0\n",  # front matter never closed
    ],
)
def test_a_folder_without_a_licence_in_its_card_has_an_unknown_one(tmp_path: Path, card: str | None) -> None:
    licence = licence_of(str(model_folder(tmp_path, "model", card)))
    assert (licence.commercial, licence.source, licence.known) == (Commercial.UNKNOWN, LicenceSource.UNKNOWN, False)


def test_a_hub_model_s_card_is_read_from_the_cache_else_its_known_release(hub_cache: Path) -> None:
    cache_card(hub_cache, "latentcord-test/carded", "---\nlicense: creativeml-openrail-m\n---\n")
    # A card in the cache wins over the known releases, as a fine-tune's card wins over its base's.
    cache_card(hub_cache, "stabilityai/stable-diffusion-2-1", "---\nlicense: cc-by-nc-4.0\n---\n")
    models = (
        "latentcord-test/carded",
        "stabilityai/stable-diffusion-2-1",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "black-forest-labs/FLUX.2-klein-9B",
        "black-forest-labs/flux.2-klein-4b",  # the Hub resolves ids without regard to case
        "Tongyi-MAI/Z-Image-Turbo",
        "someone/another-model",
    )
    licences = {model: licence_of(model) for model in models}
    told = {model: (licence.name, licence.commercial, licence.source) for model, licence in licences.items()}
    assert told == {
        "latentcord-test/carded": ("CreativeML OpenRAIL-M", Commercial.YES, LicenceSource.MODEL_CARD),
        "stabilityai/stable-diffusion-2-1": ("CC-BY-NC-4.0", Commercial.NO, LicenceSource.MODEL_CARD),
        "stabilityai/stable-diffusion-xl-base-1.0": (
            "CreativeML OpenRAIL++-M",
            Commercial.YES,
            LicenceSource.KNOWN_RELEASE,
        ),
        "black-forest-labs/FLUX.2-klein-9B": (
            "FLUX Non-Commercial License",
            Commercial.NO,
            LicenceSource.KNOWN_RELEASE,
        ),
        "black-forest-labs/flux.2-klein-4b": ("Apache-2.0", Commercial.YES, LicenceSource.KNOWN_RELEASE),
        "Tongyi-MAI/Z-Image-Turbo": ("Apache-2.0", Commercial.YES, LicenceSource.KNOWN_RELEASE),
        "someone/another-model": ("unknown licence", Commercial.UNKNOWN, LicenceSource.UNKNOWN),
    }


def test_a_single_file_s_licence_is_its_modelspec_metadata(tmp_path: Path) -> None:
    tensors = {"weight": np.zeros((2, 2), dtype=np.float16)}
    save_file(tensors, str(tmp_path / "nc.safetensors"), metadata={"modelspec.license": "CC-BY-NC-4.0"})
    save_file(tensors, str(tmp_path / "plain.safetensors"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    nc = licence_of(str(tmp_path / "nc.safetensors"))
    assert (nc.id, nc.commercial, nc.source) == ("cc-by-nc-4.0", Commercial.NO, LicenceSource.MODEL_CARD)
    assert not licence_of(str(tmp_path / "plain.safetensors")).known
    assert not licence_of(str(tmp_path / "broken.safetensors")).known


def test_the_builtin_models_are_mit_and_what_cannot_load_is_unknown(tmp_path: Path) -> None:
    for model in (TINY_MODEL_ID, TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID):
        licence = licence_of(model)
        assert (licence.name, licence.commercial, licence.source) == (
            "MIT",
            Commercial.YES,
            LicenceSource.KNOWN_RELEASE,
        )
    (tmp_path / "model.ckpt").write_bytes(b"pickle")
    for model in (str(tmp_path / "model.ckpt"), str(tmp_path / "nowhere"), "not a model"):
        assert not licence_of(model).known


def test_the_readme_s_table_of_known_releases_is_the_one_start_up_reads() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| Model (hub id) | Licence | Commercial use |", 1)[1].split("\n\n", 1)[0]
    listed = {}
    for row in table.strip().splitlines()[1:]:  # after the | --- | line
        models, licence, commercial = (cell.strip() for cell in row.strip("|").split("|"))
        for model in re.findall(r"`([^`]+)`", models):
            listed[model.casefold()] = (licence, commercial.split(",")[0])
    assert listed == {model: (licence.name, licence.commercial.value) for model, licence in known_releases().items()}


# -- COMMERCIAL_USE ------------------------------------------------------------------------------------------


def test_commercial_use_refuses_each_model_it_cannot_run_with_one_sentence(tmp_path: Path) -> None:
    apache = model_folder(tmp_path, "apache", "---\nlicense: apache-2.0\n---\n")
    custom = model_folder(tmp_path, "custom", "---\nlicense: other\nlicense_name: acme-studio-terms\n---\n")
    nc = model_folder(tmp_path, "nc", FLUX_NON_COMMERCIAL)
    uncarded = model_folder(tmp_path, "uncarded", None)
    configured = Settings(sd_model=TINY_MODEL_ID, extra_models=tuple(map(str, (apache, custom, nc, uncarded))))
    assert commercial_use_refusals(configured) == []  # COMMERCIAL_USE is off by default
    remedy = "remove it from SD_MODEL/SD_EXTRA_MODELS or set COMMERCIAL_USE=false."
    assert commercial_use_refusals(replace(configured, commercial_use=True)) == [
        f"COMMERCIAL_USE is on, but {custom} is under acme-studio-terms, which Latentcord does not know to allow "
        f"commercial use: {remedy}",
        f"COMMERCIAL_USE is on, but {nc} is under the FLUX Non-Commercial License, which forbids commercial use: "
        f"{remedy}",
        f"COMMERCIAL_USE is on, but the licence of {uncarded} is unknown (no model card says it): {remedy}",
    ]


def test_commercial_use_is_read_like_the_other_switches() -> None:
    assert Settings.from_env({}, env_file=None).commercial_use is False
    assert Settings.from_env({"COMMERCIAL_USE": "true"}, env_file=None).commercial_use is True
    with pytest.raises(SettingsError, match="COMMERCIAL_USE='maybe' is invalid: it accepts true or false"):
        Settings.from_env({"COMMERCIAL_USE": "maybe"}, env_file=None)


_OWNER_SETTINGS = ("DISCORD_TOKEN", "SD_MODEL", "SD_EXTRA_MODELS", "COMMERCIAL_USE", "REDIS_URL", "WORKER_ID")


def start(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in an empty folder (no .env), with ``settings`` and none of the owner's own."""
    env = {name: value for name, value in os.environ.items() if name not in _OWNER_SETTINGS}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), **settings)
    workdir = tmp_path / "run"
    workdir.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "settings_of_the_run"),
    [
        ((), {"DISCORD_TOKEN": "a-token-it-never-uses"}),
        # With REDIS_URL (a port nothing listens on): refused before the server is ever reached.
        ((), {"DISCORD_TOKEN": "a-token-it-never-uses", "REDIS_URL": "redis://127.0.0.1:9/0"}),
        (("worker",), {"REDIS_URL": "redis://127.0.0.1:9/0"}),
    ],
)
def test_start_up_stops_with_a_sentence_for_each_model_commercial_use_forbids(
    tmp_path: Path, args: tuple[str, ...], settings_of_the_run: dict[str, str]
) -> None:
    nc = model_folder(tmp_path, "klein9b", FLUX_NON_COMMERCIAL)
    uncarded = model_folder(tmp_path, "uncarded", None)
    run = start(
        tmp_path,
        *args,
        SD_MODEL=str(nc),
        SD_EXTRA_MODELS=f"{TINY_MODEL_ID},{uncarded}",
        COMMERCIAL_USE="true",
        **settings_of_the_run,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        f"error: COMMERCIAL_USE is on, but {nc} is under the FLUX Non-Commercial License, which forbids commercial "
        "use: remove it from SD_MODEL/SD_EXTRA_MODELS or set COMMERCIAL_USE=false.",
        f"error: COMMERCIAL_USE is on, but the licence of {uncarded} is unknown (no model card says it): remove it "
        "from SD_MODEL/SD_EXTRA_MODELS or set COMMERCIAL_USE=false.",
    ]


def test_without_commercial_use_the_same_models_are_not_refused_for_their_licence(tmp_path: Path) -> None:
    nc = model_folder(tmp_path, "klein9b", FLUX_NON_COMMERCIAL)
    run = start(tmp_path, SD_MODEL=str(nc), COMMERCIAL_USE="false")  # and no token: the next check stops it
    assert run.returncode == 2
    assert run.stderr.startswith("error: DISCORD_TOKEN is not set") and "COMMERCIAL_USE" not in run.stderr


# -- /model list ---------------------------------------------------------------------------------------------


async def test_model_list_shows_each_model_s_family_and_licence(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine, tmp_path: Path
) -> None:
    sdxl = model_folder(tmp_path, "sdxl-copy", "---\nlicense: openrail++\n---\n", "StableDiffusionXLPipeline")
    extra = "someone/another-model"  # no worker announced it and this host has nothing of it
    configured = replace(settings, extra_models=(str(sdxl), extra))
    async with running_bot(fake_discord, configured, tiny_engine):
        listed = await fake_discord.run_slash("model list", user=world.moderator, channel=world.text_channel)
        answer = await listed.wait_for_response()
    assert answer.ephemeral
    assert answer.content.splitlines() == [
        "Models on this server:",
        f"✅ `{TINY_MODEL_ID}` · tiny (SD) · MIT",
        f"✅ `{sdxl}` · SDXL · CreativeML OpenRAIL++-M",
        f"✅ `{extra}` · family not known yet · unknown licence",
    ]
