"""``torch.compile`` of the stacked step, measured against eager (``bench --compile``).

The engine's vmapped forward pass (``torch.vmap`` over ``functional_call`` on the meta model, the form
TorchDynamo traces) is compiled with the default backend (inductor; on the CPU it writes and builds C++
kernels, so a compiler must be on the PATH); autograd runs the compiled backward AOTAutograd made. Both
contenders train the same config (LocalSGD, B = 32, tau = 32, rounds included, no evaluation) for
``steps`` steps in alternating chunks. Reported: the first compiled step's wall seconds (tracing and
compiling; the C++ builds run in subprocesses), how many graphs were compiled over the whole run (a
recompile is a new graph: e.g. a guard on a parameter's strides failing), the steady-state time per
step of each, the end-to-end ratio with the compile time included, and the largest parameter gap after
20 steps (float32).

It is a measurement, not an option of the engine: on this CPU the compiled step is slower than eager
(docs/benchmarks.md), so ``Config`` has no ``compile`` field.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from grawa_sim.bench.baselines import timer
from grawa_sim.bench.training import _train
from grawa_sim.config import Config
from grawa_sim.engine.problem import Problem, build_problem


def compile_forward(problem: Problem, counter: list[int], backend: str = "inductor") -> None:
    """Replace ``problem``'s stacked forward pass by a compiled one; ``counter[0]`` counts compiled graphs."""
    from torch.func import functional_call

    meta = problem.engine.model.meta

    def counting(gm, example_inputs):
        counter[0] += 1
        if backend == "inductor":
            from torch._inductor.compile_fx import compile_fx

            return compile_fx(gm, example_inputs)
        from torch._dynamo.backends.registry import lookup_backend

        return lookup_backend(backend)(gm, example_inputs)

    vmapped = torch.vmap(lambda p, b, x: functional_call(meta, (p, b), (x,)), randomness="different")
    problem.engine.model.forward = torch.compile(vmapped, backend=counting, dynamic=False)


def _gap(a: Problem, b: Problem) -> float:
    return max(float((a.engine.params[n] - b.engine.params[n]).abs().max()) for n in a.engine.params)


def compile_steps(models: tuple[str, ...] = ("mlp", "cnn"), workers: int = 16, steps: int = 2000, chunks: int = 4,
                  backend: str = "inductor", out=None) -> list[dict]:
    """Eager against compiled stacked steps per model (see the module docstring); one JSON line per model."""
    out = out or sys.stdout
    rows = []
    for model in models:
        cfg = Config(algorithm="localsgd", workers=workers, tau=32, model=model, batch_size=32)
        eager, compiled = build_problem(cfg), build_problem(cfg)
        graphs = [0]
        compile_forward(compiled, graphs, backend)
        run_eager, run_compiled = _train(eager), _train(compiled)
        t0 = time.perf_counter()  # wall: inductor builds its kernels in compiler subprocesses
        run_compiled(1)
        first = time.perf_counter() - t0
        run_eager(1)
        run_eager(19)
        run_compiled(19)
        gap = _gap(eager, compiled)
        clock = timer()
        spent = {"eager": 0.0, "compiled": 0.0}
        left = steps - 20
        for i in range(chunks):
            n = left // chunks + (1 if i < left % chunks else 0)
            for name, fn in (("eager", run_eager), ("compiled", run_compiled)):
                t0 = clock()
                fn(n)
                spent[name] += clock() - t0
        row = {"model": model, "workers": workers, "steps": steps, "backend": backend,
               "threads": torch.get_num_threads(), "first_step_s": round(first, 2), "graphs": graphs[0],
               "eager_ms_per_step": round(1e3 * spent["eager"] / left, 4),
               "compiled_ms_per_step": round(1e3 * spent["compiled"] / left, 4),
               "compiled_over_eager": round(spent["compiled"] / spent["eager"], 3),
               "end_to_end_with_compile": round((spent["compiled"] + first) / spent["eager"], 3),
               "param_gap_20_steps": float(f"{gap:.2e}")}
        print(json.dumps(row), file=out, flush=True)
        rows.append(row)
    return rows
