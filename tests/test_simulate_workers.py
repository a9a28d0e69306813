"""bench/simulate_workers.py: its engine agrees with Erlang C, and a small seeded run has sane figures."""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "simulate_workers.py"


@pytest.fixture(scope="module")
def simulation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simulate_workers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_erlang_c_formula(simulation: ModuleType) -> None:
    # M/M/1: C = rho. M/M/2 at a = 1: C = 1/3 (textbook value).
    assert simulation.erlang_c(1, 0.7) == pytest.approx(0.7)
    assert simulation.erlang_c(2, 1.0) == pytest.approx(1 / 3)


@pytest.mark.parametrize("servers", [1, 2])
def test_engine_matches_erlang_c(simulation: ModuleType, servers: int) -> None:
    # At utilisation 0.5 and 100,000 jobs the relative error's standard deviation is about 1.5 %.
    check = simulation.check_erlang(servers, 0.5, 100_000, seed=3)
    assert check.error < simulation.ERLANG_TOLERANCE, check


def test_small_community(simulation: ModuleType) -> None:
    timing = simulation.Timing(simulation.DEFAULT_BATCH_S, simulation.DEFAULT_IMAGE_S)
    members = simulation.community(seed=2, hours=12, recipes=6)
    scale = simulation.time_scale(members, timing, 2.0, 12)
    sent = sum(len(session.jobs) for member in members for session in member.sessions)

    def run(workers: int):
        return simulation.simulate(
            members,
            workers,
            timing=timing,
            scale=scale,
            max_images=8,
            max_per_owner=5,
            max_total=100,
            failure_rate=0.0,
            seed=2,
        )

    runs = [run(workers) for workers in (1, 2, 4)]
    for figures in runs:
        assert 0 < figures.utilisation <= 1
        assert 0 < figures.fairness <= 1
        assert 1 <= figures.images_per_batch <= 8
        assert sum(c.jobs for c in figures.classes) == sent  # refused jobs are sent again, none is lost
        for c in figures.classes:
            assert 0 <= c.p50 <= c.p95 <= c.p99
    assert runs[0].utilisation > 0.9  # one worker is saturated at twice its unbatched capacity
    light_p99 = [figures.klass("light").p99 for figures in runs]
    assert light_p99 == sorted(light_p99, reverse=True)
    assert run(2) == runs[1]  # seeded: the same figures again


def test_command_line_writes_the_figure(simulation: ModuleType, tmp_path: Path, capsys) -> None:
    figure = tmp_path / "workers.svg"
    argv = ["--max-workers", "2", "--hours", "4", "--check-jobs", "50000", "--svg", str(figure)]
    assert simulation.main([*argv, "--failure-rate", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "M/M/1" in printed and "light" in printed and "failed jobs" in printed
    root = ElementTree.parse(figure).getroot()
    assert root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) >= 9 + 2
