"""The import rules CI checks (.ci/imports.py): no cycle, and a GPU side that loads nothing of the bot's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / ".ci" / "imports.py"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=120)


def test_the_tree_has_no_import_cycle_and_the_gpu_side_loads_nothing_of_the_bot() -> None:
    done = check(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no cycle" in done.stdout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_through_a_lazy_import_and_a_gpu_module_that_reaches_the_bot_are_named(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "bot/__init__.py": "",
            "bot/__main__.py": "from bot.runtime import launcher\n",
            "bot/runtime/__init__.py": "",
            "bot/runtime/launcher.py": "def start():\n    from bot.gpu import main\n",
            "bot/gpu/__init__.py": "",
            "bot/gpu/main.py": "import bot.images.meta\n\ndef run():\n    from bot.__main__ import start\n",
            "bot/images/__init__.py": "",
            "bot/images/meta.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import db\nfrom bot.jobs import recipe\n",
            "bot/jobs/__init__.py": "",
            "bot/jobs/recipe.py": "",
            "models/__init__.py": "",
            "db/__init__.py": "",
            "cogs/__init__.py": "",
        },
    )
    done = check(tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "import cycle: bot.__main__ <-> bot.gpu.main <-> bot.runtime.launcher" in lines
    assert "the GPU side loads bot.jobs.recipe: bot.gpu.main -> bot.images.meta -> bot.jobs.recipe" in lines
    assert not any("loads db" in line for line in lines)  # only under TYPE_CHECKING: never run
