"""Settings from ``.env``: what python-dotenv reads is read, and a line it cannot read stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import DEFAULT_MODEL, Settings, SettingsError


def settings_from(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    env_file = tmp_path / ".env"
    env_file.write_text(text, encoding="utf-8")
    return Settings.from_env(environ or {}, env_file=env_file)


def test_comments_blank_lines_quotes_and_export_are_read(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        "# Latentcord\n"
        "\n"
        "   \n"
        "SD_MODEL=builtin:tiny  # the tiny model\n"
        "export DEVICE=cpu\n"
        "DATABASE_PATH='data/my bot.sqlite3'\n"
        'IMAGES_DIR="${HOME_OF_IMAGES}/images"\n'
        "HOME_OF_IMAGES=unused\n"
        "SD_EXTRA_MODELS=\n"
        "DISCORD_TOKEN\n",  # a name alone sets nothing
    )
    assert settings.sd_model == "builtin:tiny"
    assert settings.device == "cpu"
    assert settings.database_path == Path("data/my bot.sqlite3")
    assert settings.images_dir == Path("/images")  # interpolated as python-dotenv does; HOME_OF_IMAGES came later
    assert settings.extra_models == ()
    assert settings.discord_token is None


def test_a_quoted_value_may_span_lines(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, 'SD_EXTRA_MODELS="a/b,\nc/d"\nDEVICE=cpu\n')
    assert settings.extra_models == ("a/b", "c/d")
    assert settings.device == "cpu"


def test_the_environment_wins_over_env(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "SD_MODEL=builtin:tiny\n", {"SD_MODEL": "owner/model"})
    assert settings.sd_model == "owner/model"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("SD_MODEL builtin:tiny\n", 1),
        ("# settings\n\n\nSD_MODEL builtin:tiny\nDEVICE=cpu\n", 4),
        ('DEVICE=cpu\nSD_MODEL="builtin:tiny\nLOG_LEVEL=INFO\n', 2),
        ("DEVICE=cpu\nSD_MODEL='builtin:tiny", 2),
        ("DEVICE=cpu\r\n\r\n= builtin:tiny\r\n", 3),
        ("DEVICE=cpu\nSD-MODEL: builtin:tiny\n", 2),
    ],
    ids=[
        "missing-equals",
        "after-blank-lines",
        "unclosed-double-quote",
        "unclosed-quote-at-end",
        "crlf-no-name",
        "colon",
    ],
)
def test_a_line_that_does_not_parse_names_the_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(SettingsError) as failure:
        settings_from(tmp_path, text, {"SD_MODEL": "builtin:tiny"})
    assert str(failure.value) == (
        f"{tmp_path / '.env'} line {line} is not NAME=value (a missing '=' or an unclosed quote?): "
        "fix the line or comment it out with #."
    )


def test_the_sentence_does_not_repeat_the_line_which_may_hold_a_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as failure:
        settings_from(tmp_path, "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs secret\n")
    assert "MTk4" not in str(failure.value)


def test_an_env_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"SD_MODEL=caf\xe9\n")
    with pytest.raises(SettingsError, match=r"\.env is not UTF-8 text"):
        Settings.from_env({}, env_file=env_file)


def test_no_env_file_means_defaults(tmp_path: Path) -> None:
    assert Settings.from_env({}, env_file=tmp_path / ".env").sd_model == DEFAULT_MODEL


def test_the_upscaler_settings_are_read_and_a_tile_too_small_is_refused_at_start(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        "UPSCALER=models/4x.safetensors\nUPSCALER_TILE=256\nUPSCALE_STRENGTH=0\nCAPTIONER=builtin:tiny-florence2\n",
    )
    assert (settings.upscaler, settings.upscaler_tile, settings.upscale_strength) == (
        Path("models/4x.safetensors"),
        256,
        0.0,
    )
    assert settings.captioner == "builtin:tiny-florence2"
    with pytest.raises(SettingsError, match="UPSCALER_TILE='32' is invalid: it accepts 0 .whole images. or"):
        settings_from(tmp_path, "UPSCALER_TILE=32\n")


def test_the_web_gallery_needs_its_client_secret_and_a_public_address_it_can_send_members_back_to() -> None:
    on = Settings.from_env(
        {"WEB_PORT": "8080", "DISCORD_CLIENT_SECRET": "s3cret-value", "WEB_PUBLIC_URL": "https://g.example.org/"},
        env_file=None,
    )
    assert (on.web_port, on.web_host, on.gallery_url) == (8080, "127.0.0.1", "https://g.example.org")
    assert "s3cret-value" not in repr(on)
    assert Settings.from_env({"WEB_PORT": "8080", "DISCORD_CLIENT_SECRET": "x"}, env_file=None).gallery_url == (
        "http://localhost:8080"
    )
    assert Settings.from_env({}, env_file=None).gallery_url is None
    with pytest.raises(SettingsError, match="WEB_PORT is set but DISCORD_CLIENT_SECRET is not"):
        Settings.from_env({"WEB_PORT": "8080"}, env_file=None)
    for wrong in ("ftp://g", "https://example.org/gallery", "example.org"):
        with pytest.raises(SettingsError, match=f"WEB_PUBLIC_URL='{wrong}' is invalid: it accepts an http"):
            Settings.from_env({"WEB_PUBLIC_URL": wrong}, env_file=None)
    with pytest.raises(SettingsError, match="DISCORD_CLIENT_ID='abc' is invalid"):
        Settings.from_env({"DISCORD_CLIENT_ID": "abc"}, env_file=None)
