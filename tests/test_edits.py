"""The edit geometry, members' pictures and edit recipes, without Discord: what the edit-loop tests build on."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from bot.errors import InvalidRequest
from bot.images.edits import REGIONS, edit_size, feather_px, plan_edit, region_mask, zoom_mask
from bot.images.uploads import KeptPictures, check_attachment, fit_to, read_upload
from bot.jobs.admission import cost_of
from bot.jobs.events import Failed, Finished
from bot.jobs.generation import work_order
from bot.jobs.recipe import JobKind
from bot.jobs.requests import nearest_aspect
from bot.workers.dispatch import Dispatcher
from bot.workers.inprocess import InProcessTransport
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests.helpers import MemoryAttempts, NoNsfw, Recorder
from tests.recipes import a_recipe

RNG = np.random.default_rng(7)
SOURCE = Image.fromarray(RNG.integers(0, 255, (128, 192, 3), dtype=np.uint8))  # 192 wide, 128 high


@pytest.mark.parametrize("label", list(REGIONS))
def test_a_region_mask_draws_the_region_and_keeps_everything_beyond_a_narrow_band(label: str) -> None:
    plan = plan_edit(region_mask(label), SOURCE)
    mask = np.asarray(plan.mask)
    left, top, right, bottom = REGIONS[label]
    x0, y0, x1, y1 = round(left * 192), round(top * 128), round(right * 192), round(bottom * 128)
    assert (mask[y0:y1, x0:x1] == 255).all()
    band = feather_px(192, 128)
    assert band == 128 // 16
    ys, xs = np.mgrid[0:128, 0:192]
    beyond = (np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), np.maximum(y0 - ys, ys - (y1 - 1)))) >= band
    assert (mask[beyond] == 0).all() and beyond.any()
    assert np.array_equal(np.asarray(plan.canvas), np.asarray(SOURCE))


def test_zoom_out_puts_the_shrunk_source_at_the_centre_and_draws_the_border() -> None:
    plan = plan_edit(zoom_mask("2"), SOURCE)
    mask, canvas = np.asarray(plan.mask), np.asarray(plan.canvas)
    assert plan.canvas.size == SOURCE.size
    shrunk = np.asarray(SOURCE.resize((96, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(canvas[32:96, 48:144], shrunk)
    band = feather_px(192, 128)
    assert (mask[32 + band : 96 - band, 48 + band : 144 - band] == 0).all()
    assert (mask[:32] == 255).all() and (mask[:, :48] == 255).all()


def test_pan_grows_by_half_rounded_to_the_multiple_and_ramps_only_along_the_seam() -> None:
    assert edit_size("pan:left", 192, 128) == (288, 128)
    assert edit_size("pan:up", 192, 128) == (192, 192)
    assert edit_size("pan:right", 120, 64) == (184, 64)  # half of 120 is 60, rounded to a multiple of 8: 64
    plan = plan_edit("pan:right", SOURCE)
    mask = np.asarray(plan.mask)
    band = feather_px(288, 128)
    assert (mask[:, 192:] == 255).all()
    assert (mask[:, : 192 - band] == 0).all()  # no ramp along the canvas's own edges
    assert np.array_equal(np.asarray(plan.canvas)[:, :192], np.asarray(SOURCE))


def test_an_unknown_edit_is_refused_in_a_sentence() -> None:
    with pytest.raises(InvalidRequest, match="Unknown region"):
        region_mask("Middle")
    with pytest.raises(InvalidRequest, match="not an edit"):
        plan_edit("zoom:3", SOURCE)


def encoded(image: Image.Image, form: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=form, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("form", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_pictures_are_read(form: str) -> None:
    assert read_upload(encoded(SOURCE, form)).size == (192, 128)


def test_a_picture_is_turned_upright_and_other_formats_are_refused() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    assert read_upload(encoded(SOURCE, "JPEG", exif=exif)).size == (128, 192)
    with pytest.raises(InvalidRequest, match="PNG, JPEG or WebP"):
        read_upload(encoded(SOURCE, "GIF"))
    with pytest.raises(InvalidRequest, match="at most 10 MB"):
        check_attachment("big.png", "image/png", 11 * 1024 * 1024)
    with pytest.raises(InvalidRequest, match="PNG, JPEG or WebP"):
        check_attachment("movie.mp4", "video/mp4", 1000)
    check_attachment("photo.JPG", None, 1000)  # Discord did not say its type; the bytes will decide


async def test_a_picture_is_fitted_to_the_nearest_aspect_and_kept_by_its_content(tmp_path) -> None:
    assert (
        nearest_aspect(1920, 1080) == "16:9" and nearest_aspect(1000, 1400) == "2:3" and nearest_aspect(5, 5) == "1:1"
    )
    fitted = fit_to(SOURCE, 64, 64)
    assert fitted.size == (64, 64)
    with ThreadPoolExecutor(1) as disk:
        pictures = KeptPictures(tmp_path, disk)
        first, second = await pictures.keep(fitted), await pictures.keep(fitted.copy())
    assert first == second and first.parent == tmp_path / "sources" and first.suffix == ".png"
    assert [path.name for path in first.parent.iterdir()] == [first.name]


def test_edit_recipes_keep_their_edit_when_rerolled_and_drop_it_when_varied() -> None:
    parent = a_recipe(kind=JobKind.UPSCALE, width=128, height=128, parent_job_id=1, parent_image=0)
    zoom = parent.as_edit(7, 0, JobKind.ZOOM, "zoom:2", (128, 128))
    assert (zoom.kind, zoom.mask, zoom.strength, zoom.count, zoom.parent_job_id) == ("zoom", "zoom:2", 1.0, 4, 7)
    again = zoom.as_reroll(8)
    assert (again.kind, again.mask, again.parent_job_id) == ("zoom", "zoom:2", 7) and again.seeds != zoom.seeds
    varied = zoom.as_variation(8, 2, strength=0.6)
    assert (varied.kind, varied.mask, varied.source, varied.parent_job_id) == ("variation", None, None, 8)


def test_an_edit_costs_by_its_output_size(tiny_engine: DiffusionEngine) -> None:
    preset = tiny_engine.load(TINY_MODEL_ID)
    parent = a_recipe(model=TINY_MODEL_ID, width=128, height=128, steps=preset.steps)
    zoom = parent.as_edit(1, 0, JobKind.ZOOM, "zoom:2", edit_size("zoom:2", 128, 128))
    pan = parent.as_edit(1, 0, JobKind.PAN, "pan:left", edit_size("pan:left", 128, 128))
    assert cost_of(pan, preset, reference=preset) > cost_of(zoom, preset, reference=preset) > 0


def png(image: Image.Image) -> bytes:
    return encoded(image, "PNG")


async def test_edits_of_two_members_share_one_pipeline_call_and_a_lost_gpu_memory_refunds_as_usual(
    tiny_engine: DiffusionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Image.fromarray(RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    parent = a_recipe(model=TINY_MODEL_ID, width=64, height=64, steps=3, guidance=7.0)
    calls: list[int] = []
    real_call = tiny_engine._call_pipeline

    def counting(pipeline, arguments):  # type: ignore[no-untyped-def]
        calls.append(len(arguments["prompt"]))
        return real_call(pipeline, arguments)

    monkeypatch.setattr(tiny_engine, "_call_pipeline", counting)
    transport = InProcessTransport(tiny_engine, classifier=NoNsfw(), max_batch_images=8)
    worker = Dispatcher(transport, MemoryAttempts(), max_per_user=5, max_total=20, max_batch_images=8)
    await worker.start()
    try:
        done = {job_id: Recorder() for job_id in (1, 2, 3)}
        blocker = replace(parent, steps=6, seeds=(1,))
        worker.submit(work_order(3, 3, blocker), done[3])
        for job_id, owner in ((1, 1), (2, 2)):
            recipe = parent.as_edit(9, 0, JobKind.REGION, region_mask("Centre"), (64, 64))
            worker.submit(work_order(job_id, owner, recipe, png(source)), done[job_id])
        await asyncio.wait_for(asyncio.gather(*(recorder.done.wait() for recorder in done.values())), 120)
        assert calls == [1, 8]  # the blocker, then both members' four images in one call
        for job_id in (1, 2):
            (finished,) = done[job_id].of(Finished)
            assert finished.output.count == 4

        def out_of_memory(pipeline, arguments):  # type: ignore[no-untyped-def]
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

        monkeypatch.setattr(tiny_engine, "_call_pipeline", out_of_memory)
        panned = Recorder()
        worker.submit(work_order(4, 1, parent.as_edit(9, 0, JobKind.PAN, "pan:left", (96, 64)), png(source)), panned)
        await asyncio.wait_for(panned.done.wait(), 120)
        (failed,) = panned.of(Failed)
        assert "does not fit in GPU memory" in failed.message
    finally:
        await worker.stop(timeout_s=60)
