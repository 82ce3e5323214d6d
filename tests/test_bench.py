"""The benchmark harness runs and reports side-by-side ratios (speed itself is never asserted)."""

from __future__ import annotations

import io
import json

from grawa_sim.bench import training as bench


def test_backends_rows_for_vector_and_image_models():
    out = io.StringIO()
    rows = bench.backends(("mlp", "resnet20"), (2,), budget=0.01, repeats=1, out=out)
    assert [r["model"] for r in rows] == ["mlp", "resnet20"]
    assert [json.loads(line)["model"] for line in out.getvalue().splitlines()] == ["mlp", "resnet20"]
    for r in rows:
        assert r["vmap_steps_per_s"] > 0 and r["loop_steps_per_s"] > 0
        ratio = r["vmap_steps_per_s"] / r["loop_steps_per_s"]
        assert abs(r["vmap_over_loop"] - ratio) < 0.02 * ratio + 0.01
    assert [r["auto"] for r in rows] == ["vmap", "unrolled"]  # 2-D convolutions on the CPU run unrolled
