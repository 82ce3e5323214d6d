"""Fault probe for issue 11 (reliability): one line of outcome per fault, run against any checkout.

    python tests/fault_probe.py [--root DIR] [--only NAME,...]

Each fault runs `python -m grawa_sim ...` (or a short snippet) in a scratch folder with
PYTHONPATH=DIR, so the same probe measures the code before and after a change. Not a test
(pytest does not collect it); the tests in test_reliability.py hold the fixed behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from processes import descendants, running  # tests/processes.py (this script's folder)

TINY = ["--dataset", "digits", "--model", "logistic", "--workers", "2", "--steps", "20", "--tau", "4",
        "--batch-size", "8", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


class Probe:
    def __init__(self, root: Path, scratch: Path):
        self.root, self.scratch = root, scratch
        self.env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        for key in ("GRAWA_QUICK", "GRAWA_FIGURES", "GRAWA_RESULTS", "GRAWA_SCRATCH"):
            self.env.pop(key, None)

    def cli(self, *argv, timeout=300, env=None, cwd=None):
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "grawa_sim", *map(str, argv)], capture_output=True, text=True,
                              timeout=timeout, env={**self.env, **(env or {})}, cwd=cwd or self.scratch)
        done.seconds = time.monotonic() - start
        return done

    def py(self, code, timeout=300, cwd=None):
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=self.env, cwd=cwd or self.scratch)

    def dir(self, name):
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def said(done) -> str:
    """exit code, stderr line count, traceback or not, and the last stderr line (shortened)."""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    last = lines[-1][:110] if lines else ""
    tb = ", traceback" if "Traceback" in done.stderr else ""
    return f"exit {done.returncode}, {len(lines)} stderr line(s){tb}: {last!r}"


def hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# ---------------------------------------------------------------- the faults


def f01_divergence(p: Probe) -> str:
    from grawa_sim import algorithms

    parts = []
    for algorithm, kind in algorithms.classes().items():
        tau = [] if kind.communicates_every_step else ["--tau", "4"]
        flags = [f for f in TINY if f not in ("--tau", "4")]
        done = p.cli("run", *flags, *tau, "--algorithm", algorithm, "--lr", "1e6")
        nan = "test_loss=nan" in done.stdout
        parts.append(f"{algorithm}: exit {done.returncode}{' NaN result' if nan else ''}"
                     f"{' [' + done.stderr.strip().splitlines()[-1][:60] + ']' if done.returncode else ''}")
    return "; ".join(parts)


def f02_sweep_divergence(p: Probe) -> str:
    out = p.scratch / "sweep-div"
    flags = [f for f in TINY if f not in ("--tau", "4")]
    done = p.cli("sweep", *flags, "--algorithm", "mgrawa,easgd", "--lr", "1e6,0.05", "--tau", "4", "--out", out)
    results = out / "results.csv"
    if not results.exists():
        return f"{said(done)}; no results.csv"
    import pandas as pd

    table = pd.read_csv(results)
    status = dict(table["status"].value_counts()) if "status" in table else "no status column"
    printed = [line for line in done.stdout.splitlines() if "diverged" in line]
    return f"exit {done.returncode}; results.csv rows {len(table)}/4, status {status}; printed {printed[-1:]}"


def f03_distributed_divergence(p: Probe) -> str:
    done = p.cli("run", *TINY, "--algorithm", "easgd", "--lr", "1e6", "--ranks", "2", "--timeout", "20",
                 "--out", p.scratch / "dist-div", timeout=300)
    return f"{said(done)}, {done.seconds:.0f} s, folder written: {(p.scratch / 'dist-div').exists()}"


def f04_out_unwritable(p: Probe) -> str:
    parts = []
    ro = p.scratch / "ro"
    ro.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                             capture_output=True).returncode == 0
    try:
        for name, out in (("/proc/foo", "/proc/foo"), ("read-only mount", ro / "run")):
            if name == "read-only mount" and not mounted:
                parts.append("read-only mount: not available here")
                continue
            done = p.cli("run", *TINY, "--steps", "2000", "--out", out)
            parts.append(f"{name}: {said(done)} after {done.seconds:.1f} s")
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)])
    return "; ".join(parts)


def f05_write_error(p: Probe) -> str:
    full = p.scratch / "full"
    full.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                      capture_output=True).returncode:
        return "tmpfs mount not available"
    try:
        done = p.cli("run", *TINY, "--model", "mlp", "--out", full / "run")
        left = sorted(str(x.relative_to(full)) for x in full.rglob("*"))
        return f"disk full: {said(done)}; left in the folder: {left}"
    finally:
        subprocess.run(["umount", str(full)])


def f06_replace_whole(p: Probe) -> str:
    out = p.scratch / "whole"
    p.cli("run", *TINY, "--out", out)
    (out / "flatness.csv").write_text("model,lambda_max\nevaluated,1.0\n")
    done = p.cli("run", *TINY, "--seed", "5", "--out", out)
    seed = json.loads((out / "config.json").read_text())["seed"]
    parts = [f"other config into a run folder: {said(done)}, folder holds seed {seed}"]
    if done.returncode:
        done = p.cli("run", *TINY, "--seed", "5", "--out", out, "--overwrite")
        seed = json.loads((out / "config.json").read_text())["seed"]
        parts.append(f"with --overwrite: exit {done.returncode}, folder holds seed {seed}")
    kept = (out / "flatness.csv").exists()
    return "; ".join(parts) + f"; earlier flatness.csv {'survives beside the new run' if kept else 'gone'}"


def f07_stale_temps(p: Probe) -> str:
    out = p.scratch / "temps"
    p.cli("sweep", *TINY, "--out", out)
    key = next((out / "runs").iterdir()).name
    (out / "runs" / f".{key}.k1ll3d").mkdir()
    (out / "runs" / f".{key}.k1ll3d" / "history.csv").write_text("step\n")
    (out / ".results.csv.k1ll3d").write_text("run\n")
    p.cli("sweep", *TINY, "--seed", "1", "--out", out)
    return f"after the next sweep: {hidden(out) or 'none left'}"


def f08_permissions(p: Probe) -> str:
    out = p.scratch / "perm"
    p.cli("sweep", *TINY, "--out", out)
    run_dir = next((out / "runs").iterdir())
    p.cli("flatness", "--run", run_dir, "--metrics", "loss", "--probe", "16")
    modes = {name: oct(path.stat().st_mode & 0o777) for name, path in
             (("results.csv", out / "results.csv"), ("flatness.csv", run_dir / "flatness.csv"),
              ("history.csv", run_dir / "history.csv"), ("run folder", run_dir))}
    return ", ".join(f"{k} {v}" for k, v in modes.items())


def f09_truncated(p: Probe) -> str:
    parts = []
    for label, keep in (("cut to 3 rows", 4), ("empty", 0)):
        out = p.scratch / f"trunc-{keep}"
        p.cli("sweep", *TINY, "--out", out)
        history = next((out / "runs").iterdir()) / "history.csv"
        lines = history.read_text().splitlines(keepends=True)
        history.write_text("".join(lines[:keep]))
        done = p.cli("sweep", *TINY, "--out", out)
        reused = "reused" in done.stderr
        if done.returncode:
            parts.append(f"{label}: {said(done)}")
        else:
            import pandas as pd

            step = pd.read_csv(out / "results.csv")["step"].iloc[-1]
            parts.append(f"{label}: exit 0, {'reused' if reused else 'recomputed'}, reported step {step}/20")
    return "; ".join(parts)


def f10_flatness_unreadable(p: Probe) -> str:
    out = p.scratch / "badparams"
    p.cli("run", *TINY, "--out", out)
    (out / "params.pt").write_bytes(b"not a zip file at all")
    done = p.cli("flatness", "--run", out, "--metrics", "loss")
    advice = "weights_only=False" in done.stderr
    return f"{said(done)}{'; passes on weights_only=False advice' if advice else ''}"


def f11_kill(p: Probe) -> str:
    parts = []
    for victim in ("torchrun", "launcher"):
        out = p.scratch / f"kill-{victim}"
        proc = subprocess.Popen([sys.executable, "-m", "grawa_sim", "run", "--ranks", "2", "--workers", "2",
                                 "--steps", "100000", "--model", "mlp", "--out", str(out), "--no-progress",
                                 "--timeout", "30"], env=p.env, cwd=p.scratch,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ranks, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline and len(ranks) < 2:
            time.sleep(0.5)
            family = descendants(proc.pid)
            ranks = [pid for pid in family if "grawa_sim.cli.distributed" in
                     Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                     and "torch.distributed.run" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()]
        family = descendants(proc.pid)
        torchrun = [pid for pid in family if pid not in ranks]
        time.sleep(3)
        target = proc.pid if victim == "launcher" else min(torchrun)
        os.kill(target, signal.SIGKILL)
        time.sleep(8)
        left = sorted(running(pid for pid in family | {proc.pid} if pid != target))
        names = ["rank" if pid in ranks else "launcher" if pid == proc.pid else "torchrun" for pid in left]
        parts.append(f"SIGKILL {victim}: {len(left)} of {len(family)} others still running 8 s later"
                     + (f" ({', '.join(sorted(names))})" if left else ""))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return "; ".join(parts)


def f12_timeout(p: Probe) -> str:
    parts = []
    for value in ("0", "-5"):
        done = p.cli("run", *TINY, "--ranks", "2", "--timeout", value, timeout=120)
        started = "torch.distributed" in done.stderr or "rank" in done.stderr or "test_acc" in done.stdout
        parts.append(f"--timeout {value}: {said(done)}{' (torchrun started)' if started else ''}")
    return "; ".join(parts)


def f13_ignored(p: Probe) -> str:
    cases = {
        "--alpha without dirichlet": [*TINY, "--alpha", "0.3"],
        "--tau with dp": [*TINY, "--algorithm", "dp"],
        "tau > steps": [*[f for f in TINY if f not in ("--tau", "4")], "--tau", "64"],
        "cosine cut by time_budget": [*TINY, "--lr-schedule", "cosine", "--time-budget", "0.001",
                                      "--step-time", "0.001"],
    }
    parts = []
    for name, argv in cases.items():
        done = p.cli("run", *argv)
        warned = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
        parts.append(f"{name}: exit {done.returncode}" + (f" [{done.stderr.strip().splitlines()[-1][:60]}]"
                                                          if done.returncode else "")
                     + (f" warning [{warned[0][:60]}]" if warned else ""))
    done = p.py("""
        from grawa_sim import Config
        try:
            Config(momentum=2.0); print("Config(momentum=2.0) built")
        except ValueError as e:
            print("Config(momentum=2.0) raises:", e)
    """)
    parts.append(done.stdout.strip() or said(done))
    return "; ".join(parts)


def f14_memory(p: Probe) -> str:
    done = p.cli("run", "--dataset", "digits", "--model", "mlp", "--width", "4000000000", "--workers", "4",
                 "--steps", "2", "--tau", "1", "--batch-size", "8", "--no-progress")
    oom = f"huge model: {said(done)}"
    spread = p.py("""
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from grawa_sim.core.collectives import StackedAxis
        from grawa_sim.engine.recorder import spread
        params = {"a": torch.randn(2048, 64, 64), "b": torch.randn(2048, 64, 32)}
        class Peak(TorchDispatchMode):
            live = 0
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in (out if isinstance(out, (tuple, list)) else [out]):
                    if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                        Peak.live = max(Peak.live, t.numel() * 8)
                return out
        with Peak():
            spread(params, StackedAxis(2048))
        layer = params["a"].numel() * 8
        mib = 2**20
        print(f"spread: largest float64 temporary {Peak.live / mib:.0f} MiB (largest layer: {layer / mib:.0f} MiB)")
    """)
    return oom + "; " + (spread.stdout.strip() or said(spread))


def f15_repr(p: Probe) -> str:
    done = p.py("""
        import grawa_sim as g
        r = g.run(g.Config(dataset="digits", model="mlp", workers=8, steps=8, tau=4, batch_size=8), progress=False)
        text = repr(r)
        print(f"{len(text)} characters, {text.count(chr(10)) + 1} lines: {text[:70]!r}")
    """)
    return done.stdout.strip() or said(done)


def f16_quick(p: Probe) -> str:
    project = p.dir("fake-project")
    (project / "pyproject.toml").write_text((p.root / "pyproject.toml").read_text())
    (project / "figures").mkdir(exist_ok=True)
    done = p.cli("reproduce", "--quick", "--out", project / "results" / "q", "--no-progress", cwd=project,
                 timeout=600)
    touched = sorted(x.name for x in (project / "figures").iterdir())
    return f"reproduce --quick: exit {done.returncode}; committed figures/ now holds {touched or 'nothing new'}"


# ---------------------------------------------------------------- issue 12: processes, locks, storage (21-27)

LONG_SWEEP = ["--dataset", "digits", "--model", "logistic", "--workers", "2", "--algorithm", "dp", "--steps", "3000",
              "--eval-every", "3000", "--batch-size", "8", "--seed", "0,1,2", "--no-progress"]


def f21_orphaned_workers(p: Probe) -> str:
    out = p.scratch / "orphans"
    command = [sys.executable, "-m", "grawa_sim", "sweep", *LONG_SWEEP, "--jobs", "2", "--batch-runs", "2", "--out",
               str(out)]
    proc = subprocess.Popen(command, env=p.env, cwd=p.scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family, deadline = set(), time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "locks").glob("*")):
        family |= descendants(proc.pid)
        time.sleep(0.05)
    family |= descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(5)
    left = sorted(running(family))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    again = p.cli("sweep", *LONG_SWEEP, "--jobs", "2", "--batch-runs", "2", "--out", out, timeout=600)
    rows = len(pd_read(out / "results.csv"))
    return (f"sweep --jobs 2 SIGKILLed mid-ensemble: {len(left)} of {len(family)} processes below it still running 5 s "
            f"later; rerun: exit {again.returncode}, {rows}/3 runs in results.csv")


def pd_read(path: Path):
    import pandas as pd

    return pd.read_csv(path) if path.is_file() else []


def f22_reused_pid_lock(p: Probe) -> str:
    parts = []
    for label, record in (("old lock file (pid only) older than the process", None),
                          ("lock naming a live pid with another start time", "new")):
        out = p.dir(f"reused-{bool(record)}")
        p.cli("sweep", *TINY, "--out", out)  # to learn the run's key
        key = next((out / "runs").iterdir()).name
        import shutil

        shutil.rmtree(out / "runs")
        lock = out / "locks" / key
        live = os.getppid()  # a live process that never took this lock
        if record:
            lock.write_text(json.dumps({"pid": live, "host": os.uname().nodename, "started": 1, "boot": None,
                                        "since": time.time()}) + "\n")
        else:
            lock.write_text(f"{live}\n")
            os.utime(lock, (time.time() - 10 * 365 * 86400,) * 2)
        try:
            done = p.cli("sweep", *TINY, "--out", out, timeout=40)
            waited = [line for line in done.stderr.splitlines() if line.startswith("waiting")]
            parts.append(f"{label}: exit {done.returncode} after {done.seconds:.0f} s"
                         + (f", said {waited[0][:60]!r}" if waited else ""))
        except subprocess.TimeoutExpired as e:
            said_lines = (e.stderr or b"").decode(errors="replace").strip().splitlines()
            parts.append(f"{label}: still waiting after 40 s, last line {said_lines[-1][:70] if said_lines else ''!r}")
    return "; ".join(parts)


def f23_batched_params_size(p: Probe) -> str:
    flags = ["--dataset", "digits", "--model", "mlp", "--width", "32", "--workers", "2", "--steps", "8", "--tau", "4",
             "--batch-size", "8", "--no-progress"]
    p.cli("sweep", *flags, "--seed", "0,1,2,3", "--batch-runs", "4", "--out", p.scratch / "batched")
    p.cli("run", *flags, "--seed", "2", "--out", p.scratch / "alone")
    batched = next(d for d in (p.scratch / "batched" / "runs").iterdir() if "-s2-" in d.name) / "params.pt"
    alone = p.scratch / "alone" / "params.pt"
    return f"params.pt of a run of a batch of 4: {batched.stat().st_size} bytes; the run alone: {alone.stat().st_size}"


def f24_lock_write_error(p: Probe) -> str:
    full = p.dir("lockfull")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True).returncode:
        return "tmpfs mount not available"
    try:
        done = p.py(f"""
            import grawa_sim.results.sweep as sweep_module
            from pathlib import Path
            from grawa_sim.cli.main import main
            real = sweep_module.remove_stale_temps
            def fill(*args, **kwargs):  # the disk fills up after the start-up check
                Path("{full}/s/locks").mkdir(parents=True, exist_ok=True)
                try:
                    with open("{full}/filler", "ab", buffering=0) as fh:
                        while True:
                            fh.write(b"x" * 4096)
                except OSError:
                    pass
                return real(*args, **kwargs)
            sweep_module.remove_stale_temps = fill
            raise SystemExit(main(["sweep", *{TINY!r}, "--out", "{full}/s"]))
        """)
        locks = sorted(x.name for x in (full / "s" / "locks").iterdir()) if (full / "s" / "locks").is_dir() else []
        return f"disk full while taking a lock: {said(done)}; lock files left: {len(locks)}"
    finally:
        subprocess.run(["umount", str(full)])


def f25_read_only_study(p: Probe) -> str:
    url = f"sqlite:///{p.scratch / 'ro-study' / 'tune.db'}"
    flags = ["tune", "--quick", "--algorithm", "dp", "--final-seeds", "0", "--storage", url]
    p.cli(*flags, "--trials", "1")
    db = p.scratch / "ro-study" / "tune.db"
    if subprocess.run(["mount", "--bind", str(db), str(db)], capture_output=True).returncode:
        return "bind mount not available"
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], capture_output=True)
        done = p.cli(*flags, "--trials", "2")
    finally:
        subprocess.run(["umount", "-l", str(db)])
    p.py(f"""
        from grawa_sim.experiments import tune
        try:
            tune.summary("sqlite:///{p.scratch}/no-study/tune.db", ["dp"])
        except ValueError as e:
            print(e)
    """)
    created = sorted(x.name for x in (p.scratch / "no-study").iterdir()) if (p.scratch / "no-study").exists() else []
    return f"read-only study file: {said(done)}; reading a missing study created {created or 'nothing'}"


def f26_unchecked_trials(p: Probe) -> str:
    url = f"sqlite:///{p.scratch / 'unchecked.db'}"
    flags = ["tune", "--quick", "--algorithm", "dp", "--final-seeds", "0", "--storage", url]
    p.cli(*flags, "--trials", "1")
    p.py(f"""
        import optuna
        study = optuna.load_study(study_name="tune-dp", storage="{url}")
        study.ask().set_user_attr("note", "no pid recorded")
    """)
    done = p.cli(*flags, "--trials", "2")
    lines = [line for line in done.stderr.splitlines() if "RUNNING" in line or "trials finished" in line]
    counted = p.py(f"""
        import optuna
        trials = optuna.load_study(study_name="tune-dp", storage="{url}").trials
        print(sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials))
    """).stdout.strip()
    return f"a RUNNING trial without a pid: exit {done.returncode}, {counted}/2 counted, said {lines or 'nothing'}"


def f27_small(p: Probe) -> str:
    helped = p.cli("--help")
    listed = "tune" in helped.stdout.split("positional arguments")[0].split("usage")[-1].split("\n\n", 1)[-1]
    start = time.monotonic()
    jobs = p.cli("tune", "--jobs", "-1")
    took = time.monotonic() - start
    fixed = p.cli("tune", "--quick", "--algorithm", "dp", "--lr", "0.05", "--trials", "3", "--final-seeds", "0",
                  "--storage", f"sqlite:///{p.scratch / 'fixed.db'}")
    warned = [line for line in fixed.stderr.splitlines() if line.startswith("warning")]
    ran = len([line for line in fixed.stderr.splitlines() if line.startswith("[dp trial")])
    return (f"--help description names tune: {listed}; tune --jobs -1: {said(jobs)} after {took:.1f} s; "
            f"every parameter fixed: {ran} trial(s), warning {warned[0][:50] if warned else None!r}")


FAULTS = {name: f for name, f in sorted(globals().items()) if name[:1] == "f" and name[1:3].isdigit()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(ROOT), help="the checkout to probe (default: this one)")
    parser.add_argument("--only", default="", help="comma-separated fault numbers, e.g. 01,09")
    parser.add_argument("--json", default=None, help="also write the outcomes to this JSON file")
    args = parser.parse_args()
    wanted = [w.zfill(2) for w in args.only.split(",") if w]
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="grawa-probe-") as scratch:
        probe = Probe(Path(args.root).resolve(), Path(scratch))
        for name, fault in FAULTS.items():
            if wanted and name[1:3] not in wanted:
                continue
            start = time.monotonic()
            try:
                outcome = fault(probe)
            except Exception as e:  # a probe that breaks says so and the others go on
                outcome = f"probe failed: {type(e).__name__}: {e}"
            outcomes[name] = outcome
            print(f"{name} ({time.monotonic() - start:.0f} s): {outcome}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(outcomes, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
