"""Guild-approved LoRAs, embeddings and models, through the real bot and the loopback Discord.

The LoRA and embedding files are built here for ``builtin:tiny``: the LoRA with PEFT on the
tiny UNet and saved in diffusers' layout, the embedding as A1111's ``emb_params``. Bad files
are built byte by byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from bench._architectures import write_tiny_loras
from bot.jobs.generation import batch_spec
from bot.jobs.recipe import lora_uses
from bot.settings import Settings
from db.records import FineTune
from models.engine import DiffusionEngine, EngineConfig
from models.finetunes import FineTuneError, check_lora_fits, inspect_fine_tune
from models.tiny import TINY_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, running_bot
from tests.fakediscord import FakeDiscord, FakeUpload
from tests.fakediscord.server import GuildSetup
from tests.recipes import a_recipe, a_spec

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real LoRA for the tiny model's attention, in diffusers' layout, with weights big enough to show."""
    (path,) = write_tiny_loras(tmp_path_factory.mktemp("lora"), ["ink.safetensors"])
    return path.read_bytes()


def safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    path = Path(f"/tmp/latentcord-test-{id(tensors)}.safetensors")
    save_file(tensors, str(path))
    buffer.write(path.read_bytes())
    path.unlink()
    return buffer.getvalue()


EMBEDDING = safetensors_bytes({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(1))})
SDXL_LORA = safetensors_bytes(
    {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.zeros(4, 2048),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.zeros(640, 4),
    }
)


async def add(fake: FakeDiscord, world: GuildSetup, kind: str, name: str, data: bytes, filename: str, **options):
    ix = await fake.run_slash(
        f"{kind} add",
        {"name": name, "file": FakeUpload(filename, data, "application/octet-stream"), **options},
        user=world.moderator,
        channel=world.text_channel,
    )
    await ix.wait_for_response(timeout=5)
    return await ix.wait_for_message(lambda message: bool(message.content), timeout=60)


def job_id_of(grid) -> int:
    return int(grid.button(label="U1")["custom_id"].split(":")[2])


async def test_a_lora_at_weight_one_changes_the_image_and_at_zero_gives_it_exactly(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes, settings: Settings
) -> None:
    _, core = bot
    added = await add(fake_discord, world, "lora", "inkstyle", lora_file, "ink.safetensors", weight=0.8)
    assert "Added the lora `inkstyle` (tiny)" in added.content and "<lora:inkstyle:0.8>" in added.content
    listed = await fake_discord.run_slash("lora list", user=world.moderator, channel=world.text_channel)
    assert "`inkstyle` · tiny · weight 0.8" in (await listed.wait_for_response()).content
    assert len(list(settings.finetunes_dir.glob("*.safetensors"))) == 1

    plain = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=5, count=1))
    full = await finished_grid(
        await imagine(fake_discord, world, prompt="a lighthouse <lora:inkstyle:1>", seed=5, count=1)
    )
    zero = await finished_grid(
        await imagine(fake_discord, world, prompt="a lighthouse <lora:inkstyle:0>", seed=5, count=1)
    )
    by_option = await finished_grid(
        await imagine(fake_discord, world, prompt="a lighthouse", seed=5, count=1, lora="inkstyle")
    )

    def pixels(message) -> np.ndarray:
        return np.asarray(message.attachments[0].open_image().convert("RGB"), dtype=np.int16)

    assert np.abs(pixels(full) - pixels(plain)).max() > 10
    assert np.array_equal(pixels(zero), pixels(plain))
    assert not np.array_equal(pixels(by_option), pixels(plain))  # the default weight, 0.8
    assert "LoRA: inkstyle 1" in full.content
    parameters = full.attachments[0].open_image().text["parameters"]
    assert parameters.startswith("a lighthouse <lora:inkstyle:1>\n") and "Lora hashes: " in parameters
    job = await core.store.get_job(job_id_of(full))
    assert job is not None and job.recipe.prompt == "a lighthouse"  # the filter and the row see it without tags
    assert [use.name for use in lora_uses(job.recipe)] == ["inkstyle"]
    assert job.cost == (await core.store.get_job(job_id_of(plain))).cost  # a LoRA costs nothing more

    removed = await fake_discord.run_slash(
        "lora remove", {"name": "inkstyle"}, user=world.moderator, channel=world.text_channel
    )
    assert "no longer on this server's list" in (await removed.wait_for_response()).content
    assert list(settings.finetunes_dir.glob("*.safetensors")) == []  # no server names the file any more


async def test_a_member_cannot_add_one_and_another_server_cannot_use_its_names(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes
) -> None:
    refused = await fake_discord.run_slash(
        "lora add",
        {"name": "inkstyle", "file": FakeUpload("ink.safetensors", lora_file)},
        user=world.member,
        channel=world.text_channel,
    )
    assert (await refused.wait_for_response()).ephemeral
    await add(fake_discord, world, "lora", "inkstyle", lora_file, "ink.safetensors")

    other = fake_discord.add_standard_guild("Another Server")
    unknown = await imagine(fake_discord, other, prompt="a fox <lora:inkstyle:1>")
    answer = await unknown.wait_for_response(timeout=5)
    assert answer.ephemeral and "This server has no LoRA named `inkstyle`" in answer.content


async def test_an_nsfw_lora_follows_the_nsfw_policy(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes
) -> None:
    await add(fake_discord, world, "lora", "spicy", lora_file, "ink.safetensors", nsfw=True)
    refused = await imagine(fake_discord, world, prompt="a portrait <lora:spicy>")
    answer = await refused.wait_for_response(timeout=5)
    assert answer.ephemeral and "spicy is marked NSFW" in answer.content

    mode = await fake_discord.run_slash(
        "nsfw", {"mode": "age-restricted"}, user=world.moderator, channel=world.text_channel
    )
    await mode.wait_for_response()
    allowed = await imagine(fake_discord, world, prompt="a portrait <lora:spicy>", channel=world.nsfw_channel)
    assert not (await allowed.wait_for_response(timeout=5)).ephemeral


async def test_an_embedding_is_used_by_writing_its_name(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    _, core = bot
    added = await add(fake_discord, world, "embedding", "inkemb", EMBEDDING, "inkemb.safetensors")
    assert "Added the embedding `inkemb` (tiny)" in added.content
    with_it = await finished_grid(await imagine(fake_discord, world, prompt="a fox, inkemb", seed=3, count=1))
    other_word = await finished_grid(await imagine(fake_discord, world, prompt="a fox, inkem", seed=3, count=1))
    job = await core.store.get_job(job_id_of(with_it))
    assert job is not None and [entry.split(":")[0] for entry in job.recipe.embeddings] == ["inkemb"]
    a = np.asarray(with_it.attachments[0].open_image().convert("RGB"), dtype=np.int16)
    b = np.asarray(other_word.attachments[0].open_image().convert("RGB"), dtype=np.int16)
    assert np.abs(a - b).max() > 0


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def lying(data: bytes) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    first = next(key for key in header if key != "__metadata__")
    header[first]["shape"] = [9999, 9999]
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def retyped(data: bytes, dtype: str, bits: int) -> bytes:
    """``data``'s tensors (names and shapes) stored as ``dtype``, ``bits`` each, written byte by byte: torch
    cannot write every type safetensors knows."""
    (length,) = struct.unpack("<Q", data[:8])
    header, offset = {}, 0
    for name, entry in json.loads(data[8 : 8 + length]).items():
        if name == "__metadata__":
            continue
        size = math.prod(entry["shape"]) * bits // 8
        header[name] = {"dtype": dtype, "shape": entry["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


@pytest.mark.parametrize(
    ("name", "make", "filename", "sentence"),
    [
        ("inkstyle", lambda lora: b"\x80\x04fake pickle", "ink.pt", "pickle file"),
        ("inkstyle", lambda lora: b"PK\x03\x04zip", "ink.ckpt", "pickle file"),
        ("inkstyle", lambda lora: b"\x80\x04fake pickle", "ink.bin", "pickle file"),
        ("inkstyle", truncated, "ink.safetensors", "cut short"),
        ("inkstyle", lying, "ink.safetensors", "does not match its data"),
        ("inkstyle", lambda lora: retyped(lora, "F4", 4), "ink.safetensors", "weights as F4, which this bot cannot"),
        ("inkstyle", lambda lora: retyped(lora, "F6_E3M2", 6), "ink.safetensors", "weights as F6_E3M2, which"),
        ("inkstyle", lambda lora: b"\x00" * (2 * 1024 * 1024), "big.safetensors", "at most 1 MB"),
        ("nude", lambda lora: lora, "ink.safetensors", "built-in NSFW list"),
        ("a", lambda lora: lora, "ink.safetensors", "2-32 letters"),
        ("two words", lambda lora: lora, "ink.safetensors", "2-32 letters"),
        (
            "inkstyle",
            lambda lora: SDXL_LORA,
            "xl.safetensors",
            "for SDXL models; this server's models are builtin:tiny",
        ),
        ("inkstyle", lambda lora: EMBEDDING, "emb.safetensors", "is a embedding, not a lora"),
    ],
)
async def test_each_bad_file_or_name_gets_a_sentence_and_nothing_is_kept(
    fake_discord: FakeDiscord,
    world: GuildSetup,
    settings: Settings,
    tiny_engine: DiffusionEngine,
    lora_file: bytes,
    name: str,
    make,
    filename: str,
    sentence: str,
) -> None:
    async with running_bot(fake_discord, replace(settings, lora_max_mb=1), tiny_engine) as (_, core):
        answer = await add(fake_discord, world, "lora", name, make(lora_file), filename)
        assert sentence in answer.content
        assert await core.store.fine_tunes(world.guild.id) == []
    assert list(settings.finetunes_dir.glob("*")) == []


@pytest.mark.parametrize("dtype", ["F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"])
def test_a_file_in_a_newer_float_type_is_read_for_what_it_is(tmp_path: Path, lora_file: bytes, dtype: str) -> None:
    """The safetensors library knows more types than any table of ours did: none of these is "damaged"."""
    path = tmp_path / "typed.safetensors"
    path.write_bytes(retyped(lora_file, dtype, 8))
    info = inspect_fine_tune(path, "typed.safetensors")
    assert (info.kind, info.family) == ("lora", "tiny")
    path.write_bytes(retyped(EMBEDDING, dtype, 8))
    assert inspect_fine_tune(path, "typed.safetensors").kind == "embedding"


async def test_a_lora_and_an_embedding_saved_as_f8_e8m0_are_added_and_the_lora_runs(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes
) -> None:
    e8m0 = {key: tensor.to(torch.float8_e8m0fnu) for key, tensor in load_tensors(lora_file).items()}
    added = await add(fake_discord, world, "lora", "scaled", safetensors_bytes(e8m0), "scaled.safetensors")
    assert "Added the lora `scaled` (tiny)" in added.content
    vectors = {"emb_params": load_tensors(EMBEDDING)["emb_params"].abs().to(torch.float8_e8m0fnu)}
    added = await add(fake_discord, world, "embedding", "scaledemb", safetensors_bytes(vectors), "e.safetensors")
    assert "Added the embedding `scaledemb` (tiny)" in added.content
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a fox, scaledemb <lora:scaled:1>", count=1))
    assert grid.attachments and "LoRA: scaled 1" in grid.content


async def test_a_name_a_style_has_is_refused_before_the_file_is_downloaded(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes
) -> None:
    the_bot, _ = bot
    await the_bot.moderation.add_style(
        world.guild.id, "Watercolour", "{prompt}, watercolour", "", actor_id=world.moderator.user.id
    )
    downloaded = len(fake_discord.message_store.attachment_downloads)
    refused = await add(fake_discord, world, "lora", "watercolour", lora_file, "ink.safetensors")
    assert refused.content == "This server already has a style named `watercolour`."
    assert len(fake_discord.message_store.attachment_downloads) == downloaded
    assert not list(the_bot.settings.finetunes_dir.glob("**/*.safetensors"))


async def test_the_same_name_twice_a_weight_out_of_range_and_an_unknown_tag_are_refused(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes
) -> None:
    await add(fake_discord, world, "lora", "inkstyle", lora_file, "ink.safetensors")
    again = await add(fake_discord, world, "embedding", "InkStyle", EMBEDDING, "emb.safetensors")
    assert "already has a lora named `InkStyle`" in again.content
    for prompt, sentence in (
        ("a fox <lora:inkstyle:3>", "between -2 and 2, not 3"),
        ("a fox <lora:nothere:1>", "no LoRA named `nothere`"),
        ("a fox <lora:inkstyle:1> <lora:inkstyle:0.5> <lora:a:1> <lora:b:1>", "no LoRA named `a`"),
    ):
        answer = await (await imagine(fake_discord, world, prompt=prompt)).wait_for_response(timeout=5)
        assert answer.ephemeral and sentence in answer.content


async def test_moderators_choose_the_models_a_server_may_use(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    listed = await fake_discord.run_slash("model list", user=world.moderator, channel=world.text_channel)
    assert f"✅ `{TINY_MODEL_ID}`" in (await listed.wait_for_response()).content
    refused = await fake_discord.run_slash(
        "model disable", {"name": TINY_MODEL_ID}, user=world.moderator, channel=world.text_channel
    )
    assert "cannot be disabled" in (await refused.wait_for_response()).content


def test_jobs_batch_only_with_equal_adapter_sets() -> None:
    one = a_recipe(loras=("ink:1:" + "a" * 64,))
    same = a_recipe(loras=("ink:1:" + "a" * 64,), prompt="another prompt")
    other_weight = a_recipe(loras=("ink:0.5:" + "a" * 64,))
    none = a_recipe()
    assert batch_spec(one) == batch_spec(same)
    assert batch_spec(one) != batch_spec(other_weight) != batch_spec(none)


def test_a_header_is_read_without_loading_anything(tmp_path: Path, lora_file: bytes) -> None:
    path = tmp_path / "ink.safetensors"
    path.write_bytes(lora_file)
    info = inspect_fine_tune(path, "ink.safetensors")
    assert (info.kind, info.family) == ("lora", "tiny")
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(FineTuneError, match="impossible"):
        inspect_fine_tune(path, "ink.safetensors")


async def test_a_disabled_model_is_refused_on_that_server_only(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    extra = "someone/another-model"
    async with running_bot(fake_discord, replace(settings, extra_models=(extra,)), tiny_engine):
        off = await fake_discord.run_slash(
            "model disable", {"name": extra}, user=world.moderator, channel=world.text_channel
        )
        assert f"`{extra}` may no longer be used on this server" in (await off.wait_for_response()).content
        listed = await fake_discord.run_slash("model list", user=world.moderator, channel=world.text_channel)
        assert f"🚫 `{extra}`" in (await listed.wait_for_response()).content
        refused = await imagine(fake_discord, world, prompt="a fox", model=extra)
        answer = await refused.wait_for_response(timeout=5)
        assert answer.ephemeral and "is not enabled on this server" in answer.content
        on = await fake_discord.run_slash(
            "model enable", {"name": extra}, user=world.moderator, channel=world.text_channel
        )
        assert "may now be used" in (await on.wait_for_response()).content


def test_a_lora_on_a_model_with_fused_attention_applies_whole(tmp_path: Path, lora_file: bytes) -> None:
    """SD_COMPILE=auto fuses QKV on CUDA; a LoRA's q/k/v layers would then be skipped, so the engine unfuses."""
    from models.types import GenerationBatch, ImageTask

    path = tmp_path / f"{'c' * 64}.safetensors"
    path.write_bytes(lora_file)

    def engine_image(fuse: bool) -> np.ndarray:
        engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=tmp_path / "cache"))
        engine.load(TINY_MODEL_ID)
        if fuse:
            engine._resident.pipeline.fuse_qkv_projections()  # as the fast path does on CUDA
        spec = a_spec(steps=3, loras=((str(path), 1.0),))
        image = engine.run(GenerationBatch(spec, (ImageTask("a cat", "", 1),))).images[0]
        return np.asarray(image, dtype=np.int16)

    assert np.abs(engine_image(fuse=True) - engine_image(fuse=False)).max() <= 2


def test_a_multi_vector_embedding_counts_whole_in_a_weighted_prompt(tmp_path: Path, model_cache_dir: Path) -> None:
    """Weighted prompts are encoded by compel; every vector of an embedding counts there, as on the plain path."""
    from diffusers import StableDiffusionPipeline

    from models.finetunes import load_embedding
    from models.prompts import weighted_arguments
    from models.tiny import ensure_tiny_model
    from models.types import ModelFamily

    pipeline = StableDiffusionPipeline.from_pretrained(str(ensure_tiny_model(model_cache_dir)))
    path = tmp_path / "two.safetensors"
    path.write_bytes(EMBEDDING)  # two vectors
    load_embedding(pipeline, path, "<lc-two>")
    plain, _ = pipeline.encode_prompt("<lc-two> fox", "cpu", 1, False)  # the pipeline's own path: both vectors

    def compel_rows(embeddings: bool) -> torch.Tensor:
        arguments = weighted_arguments(pipeline, ModelFamily.TINY, ["<lc-two> fox"], [""], embeddings=embeddings)
        return arguments["prompt_embeds"]

    assert torch.allclose(compel_rows(True), plain, atol=1e-5)
    assert not torch.allclose(compel_rows(False), plain, atol=1e-3)  # without the expansion: the first vector only


async def test_a_lora_whose_layers_the_model_lacks_fails_by_name_and_costs_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes, settings: Settings
) -> None:
    """A file kept before /lora add compared layers (or for a model whose layers differ from its family's):
    only loading it shows it fits nothing."""
    _, core = bot
    renamed = {key.replace("unet.", "unet.renamed_", 1): tensor for key, tensor in load_tensors(lora_file).items()}
    data = safetensors_bytes(renamed)
    sha256 = hashlib.sha256(data).hexdigest()
    settings.finetunes_dir.mkdir(parents=True, exist_ok=True)
    (settings.finetunes_dir / f"{sha256}.safetensors").write_bytes(data)
    kept = FineTune(world.guild.id, "misfit", "lora", sha256, "tiny", 1.0, False)
    await core.store.add_fine_tune(kept, size_bytes=len(data), actor_id=world.moderator.user.id)
    used = (await core.store.usage(world.guild.id, world.member.user.id)).used

    ix = await imagine(fake_discord, world, prompt="a lighthouse", count=1, lora="misfit")
    failed = await ix.wait_for_original(lambda message: "❌" in message.content, timeout=180)
    assert (
        "The LoRA misfit does not fit the model builtin:tiny (NoMatchingPeftModuleError), so this job did not run "
        "and nothing was charged; a moderator can remove it with /lora remove misfit." in failed.content
    )
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == used
    # The model is as it was: the next job runs.
    assert (await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", count=1))).attachments


def kohya_layout(data: bytes, rename: dict[str, str] | None = None) -> bytes:
    """A diffusers-layout LoRA written as kohya's trainer writes one (``lora_unet_<module>.lora_down.weight``,
    ``.lora_up.weight`` and ``.alpha``, the rank: a scale of 1), its module names first renamed by ``rename``."""
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in load_tensors(data).items():
        module, _, rest = key.removeprefix("unet.").partition(".lora.")
        for old, new in (rename or {}).items():
            module = module.replace(old, new)
        name = "lora_unet_" + module.replace(".", "_")
        tensors[f"{name}.lora_{'down' if rest.startswith('down') else 'up'}.weight"] = tensor
        tensors[f"{name}.alpha"] = torch.tensor(float(min(tensor.shape)))
    return safetensors_bytes(tensors)


#: The tiny UNet's attention sits in down block 1, the mid block and up block 0; an SD 1.x-shaped file may
#: name the attention of down block 0 or up block 1, which it lacks.
ELSEWHERE = {
    "down_blocks.1.": "down_blocks.0.",
    "up_blocks.0.": "up_blocks.1.",
    "mid_block.attentions.0": "mid_block.attentions.1",
}


def text_encoder_layers(layer: int) -> dict[str, torch.Tensor]:
    """kohya's names for one layer of a 32-wide CLIP text encoder's attention and MLP."""
    tensors = {}
    for part in ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_out_proj", "mlp_fc1"):
        name = f"lora_te_text_model_encoder_layers_{layer}_{part}"
        tensors |= {f"{name}.lora_down.weight": torch.zeros(4, 32), f"{name}.lora_up.weight": torch.zeros(32, 4)}
    return tensors


async def test_a_lora_that_fits_no_layer_of_the_model_is_refused_when_added_and_not_kept(
    fake_discord: FakeDiscord, world: GuildSetup, bot, lora_file: bytes, settings: Settings
) -> None:
    _, core = bot
    misfit = kohya_layout(lora_file, ELSEWHERE)
    ix = await fake_discord.run_slash(
        "lora add",
        {"name": "misfit", "file": FakeUpload("misfit.safetensors", misfit, "application/octet-stream")},
        user=world.moderator,
        channel=world.text_channel,
    )
    await ix.wait_for_response(timeout=5)
    refused = await ix.wait_for_message(lambda message: bool(message.content), timeout=60)
    assert refused.ephemeral
    assert refused.content == "That LoRA does not fit builtin:tiny models: none of its 32 layers is one of theirs."
    listed = await fake_discord.run_slash("lora list", user=world.moderator, channel=world.text_channel)
    assert "misfit" not in (await listed.wait_for_response()).content
    assert await core.store.fine_tunes(world.guild.id) == []
    assert list(settings.finetunes_dir.glob("*")) == []

    # The same layers where the tiny model has them: kept, and applied.
    fitting = kohya_layout(lora_file)
    added = await add(fake_discord, world, "lora", "kohyaink", fitting, "kohyaink.safetensors")
    assert "Added the lora `kohyaink` (tiny)" in added.content
    plain = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=5, count=1))
    styled = await finished_grid(
        await imagine(fake_discord, world, prompt="a lighthouse", seed=5, count=1, lora="kohyaink")
    )

    def pixels(message) -> np.ndarray:
        return np.asarray(message.attachments[0].open_image().convert("RGB"), dtype=np.int16)

    assert np.abs(pixels(styled) - pixels(plain)).max() > 10


def test_a_lora_that_fits_the_model_in_part_is_kept(tmp_path: Path, lora_file: bytes) -> None:
    """Many kohya files carry text-encoder layers too; one part fitting is enough, as diffusers loads it."""
    path = tmp_path / "part.safetensors"
    cases = {
        "UNet fits, text encoder's layer 7 does not exist": {
            **load_tensors(kohya_layout(lora_file)),
            **text_encoder_layers(7),
        },
        "UNet elsewhere, text encoder fits": {
            **load_tensors(kohya_layout(lora_file, ELSEWHERE)),
            **text_encoder_layers(1),
        },
        "the text encoder alone": text_encoder_layers(0),
        "some UNet blocks fit": load_tensors(kohya_layout(lora_file, {"down_blocks.1.": "down_blocks.0."})),
    }
    for case, tensors in cases.items():
        path.write_bytes(safetensors_bytes(tensors))
        assert inspect_fine_tune(path, "part.safetensors").family == "tiny", case
        check_lora_fits(path, "tiny")  # no FineTuneError
    path.write_bytes(safetensors_bytes({**load_tensors(kohya_layout(lora_file, ELSEWHERE)), **text_encoder_layers(7)}))
    with pytest.raises(FineTuneError, match="none of its 37 layers"):
        check_lora_fits(path, "tiny")


def test_an_sdxl_lora_is_read_with_kohyas_sgm_block_names(tmp_path: Path) -> None:
    """kohya trains SDXL on the sgm UNet: input_blocks.4.1 is diffusers' down_blocks.1.attentions.0."""
    path = tmp_path / "xl.safetensors"
    path.write_bytes(SDXL_LORA)
    check_lora_fits(path, "sdxl")
    path.write_bytes(SDXL_LORA.replace(b"input_blocks_4_1", b"input_blocks_1_1"))  # SDXL's first level has none
    with pytest.raises(FineTuneError, match="does not fit SDXL models: its one layer is not one of theirs"):
        check_lora_fits(path, "sdxl")
    path.write_bytes(SDXL_LORA.replace(b"input_blocks_4_1", b"input_blocks_4_7"))  # no part 7 in a block
    with pytest.raises(FineTuneError, match="not in a layout diffusers can load"):
        check_lora_fits(path, "sdxl")
