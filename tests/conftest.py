"""One torch thread per test process (and per notebook kernel or subprocess it starts); a scratch folder.

On a 2-core machine two intra-op threads per process oversubscribe the CPU as soon as
anything else runs; pytest-xdist supplies the parallelism instead (see the Makefile).

The suite never writes into the project's committed files: quick modes, figures and notebook
results go to a scratch folder ($GRAWA_SCRATCH, $GRAWA_FIGURES, $GRAWA_RESULTS) removed at the end, and
so does the cache of generated data ($GRAWA_CACHE), shared by the test processes of one session.
"""

import atexit
import os
import shutil
import tempfile

# forced, not defaulted: a value inherited from the shell (or a machine's 16 cores) would give every xdist worker,
# torchrun rank, spawned sweep job and notebook kernel as many threads, and a loaded machine would then crawl
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GRAWA_JOB_THREADS"):
    os.environ[_threads] = "1"
if "GRAWA_SCRATCH" not in os.environ:
    _scratch = tempfile.mkdtemp(prefix="grawa-tests-")
    atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    os.environ["GRAWA_SCRATCH"] = _scratch
    os.environ.setdefault("GRAWA_FIGURES", os.path.join(_scratch, "figures"))
    os.environ.setdefault("GRAWA_RESULTS", os.path.join(_scratch, "results"))
    os.environ.setdefault("GRAWA_CACHE", os.path.join(_scratch, "cache"))  # generated MNIST-1D, FLOP counts

import torch  # noqa: E402

torch.set_num_threads(1)

# Every test file belongs to one group (pytest -m unit / parity / e2e; `make test-fast` runs the unit group):
# unit: one function or class against hand formulas or a library; parity: two implementations of the same
# training (stacked vs loop, distributed or sharded vs one process, GPU-free device plumbing) compared;
# e2e: whole runs, commands, notebooks and studies.
GROUPS = {
    "unit": ("test_algorithms", "test_augment", "test_batchnorm", "test_cli_help", "test_layers", "test_lr_schedule",
             "test_rounds", "test_clock", "test_shards", "test_stats", "test_plots", "test_experiments",
             "test_objectives", "test_flatness", "test_cifar", "test_ablations", "test_train_data", "test_stateless",
             "test_batched",
             "test_protocol", "test_report", "test_mechanism_control"),
    "parity": ("test_parity", "test_distributed", "test_sharded", "test_deep_models", "test_devices",
               "test_invariants", "test_diloco", "test_mechanism", "test_run_many", "test_control", "test_targets"),
    "e2e": ("test_runner", "test_sweep", "test_cli", "test_reliability", "test_notebooks", "test_anchor",
            "test_bench", "test_bench_gpu", "test_cifar_runs", "test_paper", "test_convergence",
            "test_convergence_study", "test_tune", "test_noniid", "test_time_budget"),
}


def pytest_collection_modifyitems(config, items):
    import pytest

    group_of = {name: group for group, names in GROUPS.items() for name in names}
    for item in items:
        module = item.path.stem
        if module not in group_of:
            raise pytest.UsageError(f"tests/{module}.py: add it to one group of GROUPS in tests/conftest.py")
        item.add_marker(getattr(pytest.mark, group_of[module]))
