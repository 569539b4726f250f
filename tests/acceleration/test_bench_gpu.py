"""The GPU benchmark script runs end to end (CPU smoke test with the tiny preset)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_bench_gpu_tiny_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--compile-backend", "eager", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    res = data["results"][0]["resolutions"]["tiny"]
    for key in ("t1", "t2", "t_skip", "t1_fp8", "t1_offload", "t1_compiled", "compile_first_call"):
        assert res[key] > 0, key
    rows = {r["preset"]: r for r in data["rows"]}
    assert rows["quality (30 steps, guidance batched)"]["passes"] == 60
    assert rows["fast (4 steps, no motion guidance)"]["calls"] == 4
    assert rows["fast + motion guidance (batched)"]["passes"] == 8
    assert data["results"][0]["skipped"] == []
    printed = capsys.readouterr().out
    assert "| tiny | tiny | fast + group offload |" in printed
