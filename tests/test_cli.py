"""``python -m bot imagine`` and ``python -m bot`` as a user runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path: Path, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder with no .env, the tiny model, and its own database."""
    monkeypatch.chdir(tmp_path)
    for name in ("DISCORD_TOKEN", "SD_EXTRA_MODELS", "DATABASE_PATH", "IMAGES_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SD_MODEL", "builtin:tiny")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(model_cache_dir))
    monkeypatch.setenv("DEVICE", "cpu")
    return tmp_path


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_imagine_writes_a_2x2_grid_with_seeds_and_the_same_pixels_twice(workdir: Path) -> None:
    first = run_cli(workdir, "imagine", "a red fox", "--out", "fox.png", "--seed", "7")
    assert first.returncode == 0, first.stderr
    assert "seeds: 7 8 9 10" in first.stdout and "fox.png" in first.stdout
    with Image.open(workdir / "fox.png") as image:
        assert image.size == (128, 128)
        parameters = image.text["parameters"]
        pixels = np.asarray(image.convert("RGB"))
    assert parameters.startswith("a red fox\n")
    assert all(str(seed) in parameters for seed in (7, 8, 9, 10))

    second = run_cli(workdir, "imagine", "a red fox", "--out", "again.png", "--seed", "7")
    assert second.returncode == 0, second.stderr
    with Image.open(workdir / "again.png") as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), pixels)


def test_options_shape_the_grid(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["imagine", "a castle --no fog", "--out", "c.png", "--count", "2", "--ar", "16:9", "--steps", "2"])
    assert code == 0
    with Image.open(workdir / "c.png") as image:
        # 16:9 at about 64x64 pixels is 88x48; two images side by side.
        assert image.size == (176, 48)
        assert "Negative prompt: fog" in image.text["parameters"]
    assert "seeds:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "The prompt is empty"),
        (["a fox", "--steps", "0"], "Steps must be between 1 and 100, not 0."),
        (["a fox", "--guidance", "99"], "Guidance must be between 0 and 30, not 99."),
        (["a fox", "--count", "5"], "Count must be between 1 and 4, not 5."),
        (["a fox", "--ar", "4:3"], "Unknown aspect ratio '4:3': choose one of 1:1, 3:2, 2:3, 16:9, 9:16."),
        (["a fox", "--seed", "-3"], "Seed must be between 0 and 4294967295, not -3."),
        (["a fox", "--model", "weights.ckpt"], ".safetensors"),
        (["a fox", "--model", "/nowhere/model"], "/nowhere/model"),
    ],
)
def test_bad_input_exits_non_zero_with_one_sentence_and_queues_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    if "weights.ckpt" in args:
        (workdir / "weights.ckpt").write_bytes(b"not really a pickle")
    code = main(["imagine", *args, "--out", "x.png"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0
    assert error.startswith("error: ") and message in error
    assert not (workdir / "x.png").exists()
    database = workdir / "data" / "bot.sqlite3"
    if database.exists():
        with sqlite3.connect(database) as connection:
            assert connection.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)


def test_the_bot_without_a_token_says_how_to_get_one(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    error = capsys.readouterr().err
    assert "DISCORD_TOKEN is not set" in error and ".env" in error


def test_bad_settings_stop_start_up_naming_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEVICE", "gpu")
    assert main(["imagine", "a fox", "--out", "x.png"]) == 2
    assert "DEVICE='gpu' is invalid: it accepts auto or cuda or cpu." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("folder", "--out out is a folder: give the file to write, such as out/grid.png."),
        ("under-a-file", "--out notes.txt/fox.png cannot be written: notes.txt is a file, not a folder."),
        ("deep-under-a-file", "--out notes.txt/a/b/fox.png cannot be written: notes.txt is a file, not a folder."),
        ("read-only-folder", "--out locked/fox.png cannot be written: this user may not write in the folder locked."),
    ],
)
def test_a_bad_out_is_refused_before_anything_is_generated_or_queued(
    workdir: Path, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    (workdir / "out").mkdir()
    (workdir / "notes.txt").write_text("not a folder")
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out = {
        "folder": "out",
        "under-a-file": "notes.txt/fox.png",
        "deep-under-a-file": "notes.txt/a/b/fox.png",
        "read-only-folder": "locked/fox.png",
    }[where]
    if where == "read-only-folder" and os.access(locked, os.W_OK):
        pytest.skip("this user writes in read-only folders (root)")
    try:
        code = main(["imagine", "a fox", "--out", out])
    finally:
        locked.chmod(0o755)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().splitlines() == [f"error: {message}"]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (workdir / "data").exists()  # no database opened, nothing queued, no images


def test_help_says_what_running_without_a_command_does_and_where_settings_come_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "With no command, it starts the Discord bot" in text
    assert "from the environment and from a .env file" in text
    for variable in ("DISCORD_TOKEN", "SD_MODEL", "DATABASE_PATH"):
        assert variable in text


def test_imagine_help_says_the_default_model_is_a_download_and_tiny_works_offline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["imagine", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "The default is a Hugging Face model, black-forest-labs/FLUX.2-klein-4B, downloaded" in text
    assert "SD_MODEL=builtin:tiny works offline" in text


def test_one_image_is_one_image(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["imagine", "a fox", "--out", "one.png", "--count", "1", "--steps", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "(64x64 per image, 1 image)" in out


def a_picture(path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    Image.fromarray(gradient).save(path)
    return path


def test_image_and_strength_redraw_a_picture(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = a_picture(workdir / "wide.png", (160, 90))
    code = main(["imagine", "a barn", "--image", str(source), "--strength", "0.4", "--out", "b.png", "--count", "1"])
    assert code == 0, capsys.readouterr().err
    with Image.open(workdir / "b.png") as image:
        assert image.size == (88, 48)  # the 16:9 preset nearest 160:90
        assert "Denoising strength: 0.4" in image.text["parameters"]


@pytest.mark.parametrize(
    ("flags", "size", "edit"),
    [
        (["--zoom", "2"], (64, 64), "Zoom Out 2x"),
        (["--pan", "left"], (96, 64), "Pan left"),
        (["--region", "left-half"], (64, 64), "Vary (Region): left half"),
    ],
)
def test_zoom_pan_and_region_edit_a_picture_and_keep_its_pixels(
    workdir: Path, capsys: pytest.CaptureFixture[str], flags: list[str], size: tuple[int, int], edit: str
) -> None:
    source = a_picture(workdir / "square.png")
    code = main(["imagine", "a barn", "--image", str(source), *flags, "--out", "e.png", "--count", "1", "--steps", "2"])
    assert code == 0, capsys.readouterr().err
    with Image.open(workdir / "e.png") as image:
        assert image.size == size
        assert edit in image.text["parameters"]
        pixels = np.asarray(image.convert("RGB"))
    original = np.asarray(Image.open(source).convert("RGB"))
    band = 64 // 16
    if flags[0] == "--pan":
        assert np.array_equal(pixels[:, 32 + band :], original[:, band:])  # the picture keeps its place, on the right
    elif flags[0] == "--region":
        assert np.array_equal(pixels[:, 32 + band :], original[:, 32 + band :])  # the right half is untouched


def test_an_edit_with_a_seed_gives_the_same_pixels_again(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = a_picture(workdir / "square.png")
    grids = []
    for out in ("one.png", "two.png"):
        flags = ["--image", str(source), "--pan", "up", "--seed", "5", "--count", "2", "--steps", "2"]
        assert main(["imagine", "a barn", *flags, "--out", out]) == 0, capsys.readouterr().err
        with Image.open(workdir / out) as image:
            grids.append(np.asarray(image.convert("RGB")))
    assert grids[0].shape == (96, 128, 3) and np.array_equal(grids[0], grids[1])


def test_edits_without_a_picture_say_so(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["imagine", "a barn", "--zoom", "2", "--out", "x.png"]) == 2
    assert "give it with --image FILE" in capsys.readouterr().err
    assert main(["imagine", "a barn", "--image", "missing.png", "--out", "x.png"]) == 2
    assert "--image missing.png does not exist" in capsys.readouterr().err
    (workdir / "notes.png").write_text("not a picture")
    assert main(["imagine", "a barn", "--image", "notes.png", "--out", "x.png"]) == 2
    assert "not a picture" in capsys.readouterr().err
    assert not (workdir / "x.png").exists()


def test_permutations_and_repeat_write_one_numbered_grid_each(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["imagine", "a {red, blue} fox --repeat 2", "--out", "fox.png", "--count", "1", "--steps", "2"])
    assert code == 0
    written = sorted(path.name for path in workdir.glob("fox*.png"))
    assert written == ["fox-1.png", "fox-2.png", "fox-3.png", "fox-4.png"]
    prompts = []
    for name in written:
        with Image.open(workdir / name) as image:
            assert image.size == (64, 64)
            prompts.append(image.text["parameters"].splitlines()[0])
    assert prompts == ["a red fox", "a red fox", "a blue fox", "a blue fox"]
    assert capsys.readouterr().out.count("wrote fox-") == 4

    too_many = main(["imagine", "a {a, b, c, d, e} fox --repeat 3", "--out", "many.png"])
    assert too_many != 0 and not list(workdir.glob("many*.png"))
    assert "That prompt makes 15 jobs; the command line allows at most 12 at once." in capsys.readouterr().err
