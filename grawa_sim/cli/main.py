"""Command line: python -m grawa_sim {run, sweep, reproduce, anchor, bench, flatness, tune, notebooks, report}.

Bad input (an --out folder that cannot be written included, checked before any training) prints one
line ``error: <field>: <why> (got <value>)`` and exits 2; a diverged run, running out of memory and a
failed write print one ``error:`` line and exit 1 (`grawa_sim.cli.flags.one_line_errors`, shared with the
torchrun ranks). A field that has no effect in a legitimate combination prints one ``warning: <field>: ...`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
import warnings
from pathlib import Path

from grawa_sim.cli.flags import (  # noqa: F401 - the command line's names, re-exported
    USAGE_ERROR,
    CLIError,
    DefaultsShown,
    Failed,
    Parser,
    _converter,
    add_config_flags,
    config_from_args,
    one_line_errors,
    one_of,
)
from grawa_sim.config import EXECUTIONS, FIELD_HELP, Config, ConfigError, ConfigWarning


def _progress(args) -> bool | None:
    return False if args.no_progress else None


def _fetch_data(args, configs: list[Config]) -> None:
    """--download: fetch the CIFAR folders the configs need (only what is missing; never in tests)."""
    if not args.download:
        return
    from grawa_sim.config import IMAGE_DATASETS, resolve
    from grawa_sim.data import cifar

    configs = [resolve(c) for c in configs]  # reject bad input before a long download

    for dataset, root in sorted({(c.dataset, c.data_dir or "") for c in configs if c.dataset in IMAGE_DATASETS}):
        cifar.load(dataset, root or None, download_missing=True)


def cmd_run(args) -> None:
    _check_out(args.out)
    if args.ranks is not None:
        from grawa_sim.cli.distributed import check_timeout

        check_timeout(args.timeout)
    asked = config_from_args(args)

    from grawa_sim.engine.problem import validate
    from grawa_sim.engine.runner import run
    from grawa_sim.results.storage import check_run_folder, save_result

    _fetch_data(args, [asked])
    cfg = validate(asked)  # after the download: validate() reads the data
    devices = None
    if args.devices is not None:
        from grawa_sim.core.devices import parse_devices

        if args.ranks is not None or args.device is not None:
            raise ConfigError(f"devices: give --devices, or --device / --ranks, not both (got {args.devices!r})")
        devices = parse_devices(args.devices)
    if args.out:
        check_run_folder(args.out, cfg, args.overwrite)
    if args.ranks is not None:
        _launch_ranks(args, cfg)
        return
    result = run(cfg, progress=_progress(args), devices=devices)
    if args.out:
        save_result(result, args.out, overwrite=args.overwrite)
    final = result.final
    print(f"{cfg.algorithm} M={cfg.workers} tau={cfg.tau} steps={int(final['step'])} rounds={int(final['round'])} "
          f"test_acc={final['test_acc']:.4f} test_loss={final['test_loss']:.4f} "
          f"train_loss={final['train_loss']:.4f} spread={final['spread']:.4f} wall={final['wall_time']:.1f}s")
    if args.out:
        print("wrote " + ", ".join(str(path) for path in sorted(Path(args.out).iterdir())))


def _launch_ranks(args, cfg: Config) -> None:
    """`run --ranks R`: the validated config, handed to R torchrun ranks on this machine as a file."""
    from grawa_sim.cli import distributed

    if args.ranks < 1 or cfg.workers % args.ranks:
        raise ConfigError(f"ranks: must be >= 1 and divide workers={cfg.workers} (got {args.ranks})")
    if cfg.backend != "vmap":
        raise ConfigError(f"backend: distributed runs use the stacked engine 'vmap' (got {cfg.backend!r})")
    started = time.perf_counter()
    code, message = distributed.launch(args.ranks, cfg, args.out, port=args.port, timeout=args.timeout,
                                       overwrite=args.overwrite, progress=_progress(args))
    if message is not None:  # the ranks' one line: divergence, bad input, out of memory, a write error
        raise Failed(message, code or 1)
    if code == 2:  # a rank rejected the input and said why
        raise SystemExit(2)
    if code:
        raise Failed(f"distributed job failed (torchrun exit code {code}): a rank died or a collective timed out "
                     f"after {args.timeout:g} s; the first failure is reported above. Nothing was written.")
    print(f"job wall={time.perf_counter() - started:.1f}s ({args.ranks} processes, their start-up included)")
    if args.out:
        print("wrote " + ", ".join(str(path) for path in sorted(Path(args.out).iterdir())))


def cmd_sweep(args) -> None:
    _check_jobs(args.jobs)
    _check_out(args.out)
    from grawa_sim.engine.problem import validate
    from grawa_sim.experiments import presets as experiments
    from grawa_sim.results.sweep import grid, sweep

    axes = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    if len(axes.get("device", ())) > 1:
        named = ",".join(axes["device"])
        raise ConfigError(f"device: a sweep computes on one device, it is not a grid axis (got {named!r})")
    configs = grid(Config(), **axes)
    _fetch_data(args, configs)
    for c in configs:
        validate(c)
    histories = sweep(configs, args.out, progress=_progress(args), jobs=args.jobs, batch_runs=args.batch_runs)
    print(experiments.format_table(experiments.summary(histories, by=experiments.swept_fields(configs)))
          .to_string(float_format=lambda v: f"{v:.4g}"))
    _print_diverged(histories.groupby("run", sort=False).tail(1))
    print(f"wrote {Path(args.out) / 'results.csv'}")


def _print_diverged(finals) -> None:
    diverged = int((finals["status"] == "diverged").sum()) if "status" in finals else 0
    if diverged:
        print(f"{diverged} of {len(finals)} runs diverged (status 'diverged' in results.csv; lower their lr)")


def _experiment_setup(args) -> tuple[bool, Path]:
    """Checks shared by `reproduce` and `anchor`; returns (quick, figure folder)."""
    from grawa_sim.core.devices import resolve_device
    from grawa_sim.experiments import places as experiments

    if args.seeds < 1:
        raise ConfigError(f"seeds: must be >= 1 (got {args.seeds})")
    resolve_device(args.device)
    quick = args.quick or experiments.quick_mode()
    if args.out is None:  # quick runs never mix with (or touch) the full results
        folder = f"paper-{args.paper}" if getattr(args, "paper", None) else args.command
        args.out = str(experiments.results_dir(quick) / folder)
    _check_out(args.out)
    figures = Path(args.figures) if args.figures else experiments.figures_dir(quick)
    _check_out(str(figures))
    return quick, figures


def cmd_reproduce(args) -> None:
    _check_jobs(args.jobs)
    quick, figures = _experiment_setup(args)
    from grawa_sim.experiments import presets as experiments
    from grawa_sim.plots import runs as plots
    from grawa_sim.results.report_tables import save_tables
    from grawa_sim.results.storage import write_csv_atomic
    from grawa_sim.results.sweep import sweep

    if args.paper:
        return _reproduce_paper(args, quick, figures)
    from grawa_sim.experiments import protocol

    configs = [dataclasses.replace(c, device=args.device)
               for c in experiments.comparison_configs(quick, seeds=args.seeds)]
    histories = sweep(configs, args.out, progress=_progress(args), jobs=args.jobs, batch_runs=args.batch_runs)
    named = protocol.by_method(histories)  # figures and tables group by algorithm: the twins apart
    family = protocol.grawa_family("comparison", list(dict.fromkeys(named["method"])), reference="localsgd")
    table = experiments.summary(named, reference=family.reference)
    fig = plots.comparison_figure(named, figures / "comparison_mnist1d.png",
                                  f"MNIST-1D, 1-D CNN, M = {configs[0].workers}, reference τ per algorithm")
    table_path = write_csv_atomic(table, Path(args.out) / "summary.csv", index=True)
    contrasts = protocol.compare(histories, family)
    contrasts_path = write_csv_atomic(contrasts, Path(args.out) / "contrasts.csv")
    outcomes = protocol.outcomes(histories)
    write_csv_atomic(outcomes, Path(args.out) / "outcomes.csv", index=True)
    save_tables(figures, "comparison", summary=table, contrasts=contrasts, outcomes=outcomes)
    print(experiments.format_table(table).to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\ndeclared family '{family.name}' (reference {family.reference}), paired by seed, Holm-adjusted:")
    print(contrasts[["contrast", "n", "difference", "low", "high", "p", "p_holm", "significant_holm",
                     "smallest_detectable"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    _print_diverged(histories.groupby("run", sort=False).tail(1))
    print(f"wrote {fig}, {table_path}, {contrasts_path} and {Path(args.out) / 'results.csv'}")


def _reproduce_paper(args, quick: bool, figures: Path) -> None:
    """reproduce --paper cifar10|cifar100: ResNet-20, M = 4 and 8, every method, one simulated-time budget."""
    from grawa_sim.experiments import paper
    from grawa_sim.experiments.presets import format_table
    from grawa_sim.plots import runs as plots
    from grawa_sim.results.storage import write_csv_atomic
    from grawa_sim.results.sweep import sweep

    asked = paper.paper_configs(args.paper, quick, seeds=args.seeds, data_dir=args.data_dir, budget=args.budget)
    _fetch_data(args, asked)
    configs = [dataclasses.replace(c, device=args.device) for c in asked]
    histories = sweep(configs, args.out, progress=_progress(args), jobs=args.jobs, batch_runs=args.batch_runs)
    table = paper.paper_summary(histories)
    fig = plots.paper_figure(paper.with_method(histories), figures / f"paper_{args.paper}.png")
    table_path = write_csv_atomic(table, Path(args.out) / "summary.csv", index=True)
    print(format_table(table).to_string(float_format=lambda v: f"{v:.4g}"))
    _print_diverged(histories.groupby("run", sort=False).tail(1))
    print(f"wrote {fig}, {table_path} and {Path(args.out) / 'results.csv'}")


def cmd_anchor(args) -> None:
    quick, figures = _experiment_setup(args)
    from grawa_sim.experiments import anchor
    from grawa_sim.plots import runs as plots
    from grawa_sim.results.report_tables import save_tables

    singles, ensemble = anchor.anchor(args.out, quick=quick, seeds=args.seeds, progress=_progress(args),
                                      device=args.device)
    print(anchor.report(singles, ensemble))
    fig = plots.anchor_figure(singles, ensemble, figures / "anchor_mnist1d.png", anchor.PUBLISHED["cnn"])
    save_tables(figures, "anchor", single=singles, ensemble=ensemble)
    print(f"wrote {fig}, {Path(args.out) / 'single' / 'anchor.csv'} and {Path(args.out) / 'ensemble' / 'anchor.csv'}")


def cmd_bench(args) -> None:
    from grawa_sim.bench import training as bench
    from grawa_sim.core.devices import resolve_device

    if args.gpu:
        import torch

        from grawa_sim.bench import gpu as bench_gpu

        if not torch.cuda.is_available():
            raise ConfigError(f"gpu: bench --gpu needs a CUDA GPU and torch {torch.__version__} sees none "
                              f"(torch.cuda.is_available() is False)")
        out = Path(args.out or "results/gpu_check.json")
        if out.is_dir():
            raise ConfigError(f"out: bench --gpu writes a JSON file, and this is a directory (got '{out}')")
        out.parent.mkdir(parents=True, exist_ok=True)
        bench_gpu.check("cuda", out=out)
        print(f"wrote {out}")
        return
    device = resolve_device(args.device)
    if args.float32_gap:
        bench.float32_gap(device=device)
        return
    if args.flatness:
        from grawa_sim.bench import flatness as bench_flatness

        bench_flatness.compare(tuple(args.models.split(",")), workers=8, repeats=args.repeats, device=device)
        return
    if args.distributed:
        bench.distributed()
        return
    if args.calibrate:
        from grawa_sim.bench import calibrate

        calibrate.calibrate()
        return
    if args.batched:
        bench.batched_runs(tuple(args.models.split(",")), repeats=args.repeats, device=device)
        return
    if args.step_costs:
        bench.step_costs(repeats=args.repeats, device=device)
        return
    if args.parallel_sweep:
        bench.parallel_sweeps(repeats=args.repeats)
        return
    if args.memory:
        bench.memory(tuple(args.models.split(",")))
        return
    if args.plain or args.profile:
        import torch

        from grawa_sim.bench import baselines

        torch.set_num_threads(1)  # the documented protocol: one thread, timed in CPU seconds (baselines.timer)
    if args.plain:
        baselines.end_to_end(repeats=args.repeats)
        baselines.forward_backward()
        return
    if args.profile:
        for model in args.models.split(","):
            for m in (1, *(int(v) for v in args.workers.split(","))):
                baselines.step_profile(model, m, repeats=args.repeats)
        return
    if args.contention:
        from grawa_sim.bench.contention import contention

        contention(repeats=args.repeats)
        return
    if args.compile:
        from grawa_sim.bench import compiled

        compiled.compile_steps(tuple(args.models.split(",")))
        return
    workers = tuple(int(v) for v in args.workers.split(","))
    bench.backends(tuple(args.models.split(",")), workers, budget=args.budget, repeats=args.repeats, device=device)


def cmd_notebooks(args) -> None:
    from grawa_sim.experiments import notebook_runner

    if args.device is not None:
        from grawa_sim.core.devices import resolve_device

        resolve_device(args.device)  # a one-line error here rather than a failing cell
    notebook_runner.main([*args.paths, *(["--quick"] if args.quick else []),
                          *(["--device", args.device] if args.device is not None else [])])


def cmd_report(args) -> int:
    from grawa_sim import report

    doc = Path(args.doc) if args.doc else report.default_document()
    figures = Path(args.figures) if args.figures else doc.parent.parent / "figures"
    changed = report.update(doc, figures, check=args.check)
    if args.check and changed:
        print(f"{doc}: {len(changed)} generated table(s) differ from their CSVs: {', '.join(changed)} "
              "(run python -m grawa_sim report)", file=sys.stderr)
        return 1
    verb = "are up to date" if not changed else ("would change" if args.check else "rewritten")
    print(f"{doc}: {len(changed) if changed else 'all'} generated table(s) {verb}")
    return 0


def cmd_flatness(args) -> None:
    run_dir = Path(args.run)
    if not (run_dir / "config.json").is_file() or not (run_dir / "params.pt").is_file():
        raise ConfigError(f"run: not a finished run directory with config.json and params.pt (got '{args.run}')")
    _check_out(args.run)  # flatness.csv is written there
    from grawa_sim import flatness
    from grawa_sim.core.devices import resolve_device
    from grawa_sim.results.storage import load_params

    load_params(run_dir)  # an unreadable params.pt: one line, before any work
    for field in ("probe", "power_iters", "trace_samples", "lanczos_steps", "lanczos_starts"):
        if getattr(args, field) < 1:
            raise ConfigError(f"{field}: must be >= 1 (got {getattr(args, field)})")
    if args.batch < 0:
        raise ConfigError(f"batch: must be >= 0 (0: one batch; got {args.batch})")
    if args.eps < 0:
        raise ConfigError(f"eps: must be >= 0 (got {args.eps})")
    device = resolve_device(args.device)
    metrics = tuple(args.metrics.split(","))
    unknown = [m for m in metrics if m not in flatness.METRICS]
    if unknown:
        raise ConfigError(f"metrics: each must be one of {', '.join(flatness.METRICS)} (got {unknown[0]!r})")
    settings = flatness.Settings(power_iters=args.power_iters, trace_samples=args.trace_samples,
                                 lanczos_steps=args.lanczos_steps, lanczos_starts=args.lanczos_starts,
                                 eps=args.eps, seed=args.seed)
    from grawa_sim.results.run_flatness import measure_run

    table = measure_run(run_dir, mode=args.mode, probe=args.probe, batch=args.batch or None,
                        metrics=metrics, execution=args.execution, settings=settings, device=device)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {run_dir / 'flatness.csv'}")


def cmd_tune(args) -> None:
    _check_jobs(args.jobs)  # plain flags first: before optuna and torch are imported (seconds)
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"trials: must be an integer >= 1 (got {args.trials})")
    if args.seeds_per_trial is not None and args.seeds_per_trial < 1:
        raise ConfigError(f"seeds_per_trial: must be an integer >= 1 (got {args.seeds_per_trial})")
    if args.final_seeds is not None and (args.final_seeds == 1 or args.final_seeds < 0):
        raise ConfigError(f"final_seeds: must be 0 (no final comparison) or >= 2 (got {args.final_seeds})")
    if args.storage is not None and "://" not in args.storage:
        raise ConfigError(f"storage: must be an RDB URL such as sqlite:///results/tune.db (got {args.storage!r})")
    from grawa_sim.experiments import presets as experiments
    from grawa_sim.experiments import tune as tuning

    quick = args.quick or experiments.quick_mode()
    methods = [m.strip() for m in (args.algorithm or ",".join(tuning.DEFAULT_METHODS)).split(",") if m.strip()]
    for m in methods:
        tuning.method_config(Config(), m)  # an unknown name: one line, before anything starts
    trials = args.trials if args.trials is not None else (2 if quick else None)  # None: 8 per searched field
    seeds_per_trial = args.seeds_per_trial or (1 if quick else tuning.SEEDS_PER_TRIAL)
    final_seeds = args.final_seeds if args.final_seeds is not None else (2 if quick else 5)
    default_storage = f"sqlite:///{experiments.results_dir(quick) / 'tune.db'}"
    storage = args.storage or default_storage
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
             if f.name != "algorithm" and getattr(args, f.name) is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        base = dataclasses.replace(tuning.quick_base() if quick else Config(algorithm="dp"), **given)
    fixed = [f for f in tuning.SEARCHED if f in given]
    tuning.tune_in_processes(args.jobs, base, methods, trials, storage, args.study, seed=base.seed, fixed=fixed,
                             stale_after=args.stale_after, seeds_per_trial=seeds_per_trial)
    summary = tuning.summary(storage, methods, args.study)
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    importances = tuning.importances(storage, methods, args.study)
    if len(importances):
        print(importances.pivot(index="algorithm", columns="param", values="importance")
              .to_string(float_format=lambda v: f"{v:.2f}", na_rep="-"))
    out = tuning.comparison_folder(experiments.results_dir(quick), args.study, storage, default_storage)
    if final_seeds and (summary["complete"] > 0).all():
        configs = tuning.best_configs(base, methods, storage, args.study)
        final = tuning.final_comparison(configs, out, seeds=final_seeds, jobs=args.jobs)
        from grawa_sim.results.storage import write_csv_atomic

        write_csv_atomic(final.methods, out / "methods.csv", index=True)
        write_csv_atomic(final.contrasts, out / "contrasts.csv")
        print(final.methods[["test_acc_mean", "test_acc_ci95", "finished", "total", "divergence_rate"]]
              .to_string(float_format=lambda v: f"{v:.4g}"))
        family = tuning.final_family(list(configs))
        print(f"\ndeclared family '{family.name}' (reference {family.reference}), paired by seed, Holm-adjusted:")
        print(final.contrasts[["contrast", "n", "difference", "low", "high", "p", "p_holm", "significant_holm",
                               "smallest_detectable"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"wrote {storage}, {out / 'results.csv'}, {out / 'methods.csv'} and {out / 'contrasts.csv'}")
    else:
        if final_seeds:
            missing = ", ".join(summary.index[summary["complete"] == 0])
            print(f"no final comparison: every trial of {missing} was pruned (give more --trials, or fix a "
                  f"smaller --lr)", file=sys.stderr)
        print(f"wrote {storage}")


def _check_jobs(jobs: int) -> None:
    """--jobs: an integer >= 1, checked before the heavy imports (torch, optuna)."""
    if jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1 (got {jobs})")


DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """--stale-after: a number of seconds >= 0, or one with a unit: 90s, 30m, 24h, 2d."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h|d)?\s*", text or "")
    if not match:
        raise CLIError(f"stale_after: must be a duration such as 90s, 30m, 24h or 2d (got {text!r})")
    return float(match.group(1)) * DURATION_UNITS[match.group(2) or ""]


def _check_out(out: str | None) -> None:
    """--out must be a folder this process can write, or can create: probed with a small write, before any
    training (and before torch is imported); nothing is left behind."""
    if out:
        from grawa_sim.core.folders import check_writable

        check_writable(out)


def _add_parallel_flags(p, jobs: int, batch_runs: int | str) -> None:
    """--jobs and --batch-runs (a sweep's processes and its runs per stacked ensemble) with these defaults."""
    p.add_argument("--jobs", type=_converter(int, "jobs"), default=jobs,
                   help=f"processes computing runs at once, one torch thread each (a lock per run: two jobs or two "
                        f"sweeps never compute the same run; default {jobs})")
    p.add_argument("--batch-runs", type=_batch_runs, default=batch_runs,
                   help=f"train up to N compatible runs (differing only in seed, lr, momentum, weight decay, prox) "
                        f"as one stacked ensemble; auto: as many as fit 128 workers; 1: one run at a time "
                        f"(default {batch_runs})")


def _batch_runs(text: str) -> int | str:
    """--batch-runs: 'auto' or an integer >= 1."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise CLIError(f"batch-runs: must be 'auto' or an integer >= 1 (got {text!r})")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m grawa_sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, help="what to do")

    p = sub.add_parser("run", help="train once; writes DIR/history.csv and DIR/config.json with --out DIR")
    add_config_flags(p)
    p.add_argument("--out", help="directory for history.csv, weights.csv and config.json (default: write nothing)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run of another configuration in --out (a run folder is always replaced whole)")
    p.add_argument("--download", action="store_true", help="download CIFAR into --data-dir when missing (internet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ranks", type=_converter(int, "ranks"), default=None,
                   help="run on R torch.distributed processes on this machine (starts torchrun; "
                        "default: one process, no torch.distributed)")
    p.add_argument("--port", type=_converter(int, "port"), default=None, help="rendezvous port (default: a free one)")
    p.add_argument("--devices", default=None, help="shard the workers over these devices in this process, "
                                                   "e.g. cuda:0,cuda:1 (or cpu,cpu; default: all on the one --device)")
    p.add_argument("--timeout", type=_converter(float, "timeout"), default=60.0,
                   help="seconds a rank waits for the others in a collective before the job fails")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="a resumable grid: comma-separated values, e.g. --algorithm dp,mgrawa --seed 0,1")
    add_config_flags(p, lists=True)
    p.add_argument("--out", required=True, help="sweep directory (runs/ and results.csv)")
    p.add_argument("--download", action="store_true", help="download CIFAR into --data-dir when missing (internet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_parallel_flags(p, jobs=1, batch_runs=1)
    p.set_defaults(func=cmd_sweep)

    for name, func, text, seeds in (
        ("reproduce", cmd_reproduce, "the main job: the six compared algorithms on MNIST-1D, figures and a table", 5),
        ("anchor", cmd_anchor, "MNIST-1D logistic / MLP / CNN against their published accuracies, "
                               "then the CNN with M = 8 under every algorithm", 3),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--quick", action="store_true", help="a few steps and one seed (also GRAWA_QUICK=1)")
        p.add_argument("--seeds", type=_converter(int, "seeds"), default=seeds, help="seeds per algorithm")
        p.add_argument("--out", default=None,
                       help=f"sweep directory (resumable; default results/{name}, results/quick/{name} when quick)")
        p.add_argument("--figures", default=None,
                       help="figure folder (default: figures/ of the project; results/quick/figures when quick)")
        p.add_argument("--device", default="auto", help=FIELD_HELP["device"])
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "reproduce":
            _add_parallel_flags(p, jobs=2, batch_runs="auto")
            p.add_argument("--paper", choices=("cifar10", "cifar100"), default=None,
                           help="the paper's setting instead: ResNet-20 on this data set, M = 4 and 8, every method "
                                "with the reference hyperparameters, one simulated-time budget (needs --data-dir)")
            p.add_argument("--data-dir", default=None, help=FIELD_HELP["data_dir"])
            p.add_argument("--download", action="store_true",
                           help="with --paper: download CIFAR into --data-dir when missing (internet)")
            p.add_argument("--budget", type=_converter(float, "budget"), default=None,
                           help="with --paper: simulated seconds per run (default 900, the reference's 15 minutes)")
        p.set_defaults(func=func)

    p = sub.add_parser("bench", help="steps/s of the vmap and loop backends, measured side by side")
    p.add_argument("--models", default="mlp,cnn", help="comma-separated models to measure")
    p.add_argument("--workers", default="4,16,64", help="comma-separated worker counts M to measure")
    p.add_argument("--budget", type=float, default=0.5, help="seconds per loop-backend repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (the median is reported)")
    p.add_argument("--float32-gap", action="store_true", help="vmap-vs-loop gap in float32 and float64 instead")
    bench_modes = (  # each measures something else instead of the stacked-vs-loop table
        ("--flatness", "lambda_max and trace against PyHessian (pip install -e '.[bench]') instead"),
        ("--distributed", "the simulator (M = 8, one process) against 8 gloo processes instead"),
        ("--batched", "8 seeds of the comparison setting (M = 8) one by one against one ensemble (run_many) instead"),
        ("--step-costs", "the MLP's stacked step against one model on the FLOP-equal batch M*B, and a GRAWA round "
         "against tau = 32 local steps, at M = 16 and 64, instead"),
        ("--parallel-sweep", "the 18-run comparison sweep (100 steps) with --jobs 1 against --jobs 2, each with and "
         "without --batch-runs auto, instead (CPU)"),
        ("--calibrate", "fit the clock's all-reduce latency alpha and bandwidth 1/beta to gloo timings of 2, 4 and 8 "
         "processes on this machine (message sizes 4 kB to 4 MB) instead"),
        ("--memory", "peak CPU memory per worker (M = 64 and 1024, B = 3, each in a fresh process) instead"),
        ("--plain", "whole runs against plain PyTorch (one nn.Module, torch.optim.SGD) on the FLOP-equal batch "
         "M*B, and at M = 1, an evaluation every 100 steps, beside the same runs through torch.vmap; then the "
         "bare stacked forward/backward against one model on M*B, instead (CPU, one thread)"),
        ("--profile", "where a run's time per step goes (forward/backward, update, data, clock, recorder, "
         "evaluation, Python) beside the plain loop's, at M = 1 and each --workers, instead (CPU, "
         "one thread)"),
        ("--contention", "a 2000-step run alone against the same run beside a second one, with torch's default "
         "threads, the default with OMP_WAIT_POLICY=PASSIVE, and one thread, instead (fresh processes)"),
        ("--compile", "the stacked step with torch.compile (inductor) against eager: compile time, recompiles, "
         "time per step over 2000 steps, instead (CPU; needs a C++ compiler)"),
    )
    for flag, text in bench_modes:
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--gpu", action="store_true",
                   help="the prepared GPU check (under 5 minutes on one CUDA GPU): stacked vs loop at M = 8, 64, "
                        "256 for mlp, cnn, resnet20, peak memory per worker, vmapped flatness vs PyHessian")
    p.add_argument("--out", default=None, help="with --gpu: the JSON file to write (default results/gpu_check.json)")
    p.add_argument("--device", default="auto", help="where to measure (not with --gpu, which takes cuda; "
                                                    "--distributed runs gloo on the CPU): " + FIELD_HELP["device"])
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("flatness", help="Hessian lambda_max, trace, Lanczos, eps-sharpness of a saved run")
    p.add_argument("--run", required=True, help="a run directory written by run --out (config.json, params.pt)")
    p.add_argument("--mode", choices=("train", "eval"), default="train",
                   help="batch norm in train mode on the probe set (the authors' choice) or eval mode")
    p.add_argument("--probe", type=_converter(int, "probe"), default=320, help="training samples in the loss")
    p.add_argument("--batch", type=_converter(int, "batch"), default=32,
                   help="train-mode batch norm: batches of this many probe samples, each normalised by its own "
                        "statistics, losses and HVPs averaged (the authors' 10 x 32); 0: the probe set as one batch")
    p.add_argument("--metrics", default="loss,lambda_max,trace,lanczos,eps_sharpness",
                   help="comma-separated metrics to measure")
    p.add_argument("--execution", type=one_of("execution", EXECUTIONS), default="auto",
                   help="vmap: all models' Hessian-vector products in one vmapped call; unrolled: one model at a "
                        "time; auto: as training picks for the run's model and the device (unrolled for 2-D "
                        "convolutions on the CPU, else vmap)")
    p.add_argument("--power-iters", type=_converter(int, "power_iters"), default=100,
                   help="power iterations per lambda_max estimate")
    p.add_argument("--trace-samples", type=_converter(int, "trace_samples"), default=100,
                   help="Hutchinson probes of the trace")
    p.add_argument("--lanczos-steps", type=_converter(int, "lanczos_steps"), default=100, help="Lanczos steps")
    p.add_argument("--lanczos-starts", type=_converter(int, "lanczos_starts"), default=3,
                   help="random Lanczos starts (Ritz values averaged)")
    p.add_argument("--eps", type=_converter(float, "eps"), default=1e-3, help="radius of epsilon-sharpness")
    p.add_argument("--seed", type=_converter(int, "seed"), default=0, help="seed of the random probes and starts")
    p.add_argument("--device", default="auto", help=FIELD_HELP["device"])
    p.set_defaults(func=cmd_flatness)

    p = sub.add_parser("tune", help="equal-budget hyperparameter tuning with Optuna: one study per algorithm, "
                                    "the same number of trials each, then the best configs on fresh seeds")
    add_config_flags(p)
    next(a for a in p._actions if a.dest == "algorithm").help = (
        "comma-separated methods to tune, each in its own study: an algorithm, dp+sam, or GRAWA's uniform twin "
        "mgrawa+uniform / lgrawa+uniform (default: dp,localsgd,easgd,lsgd,mgrawa,lgrawa,mgrawa+uniform)")
    p.add_argument("--trials", type=_converter(int, "trials"), default=None,
                   help="trials per method, pruned ones included (default: 8 per searched hyperparameter; quick: 2)")
    p.add_argument("--seeds-per-trial", type=_converter(int, "seeds_per_trial"), default=None,
                   help="seeds each trial trains; its score is their mean final val_acc, a diverged seed at chance "
                        "(default: 3; quick: 1)")
    p.add_argument("--storage", default=None,
                   help="an Optuna RDB URL (default: sqlite:///results/tune.db; quick: in the scratch folder)")
    p.add_argument("--study", default="tune", help="study name prefix: one study <study>-<algorithm> each")
    p.add_argument("--jobs", type=_converter(int, "jobs"), default=1,
                   help="processes tuning at once (one torch thread each), all on the same studies through the "
                        "storage; also the processes of the final comparison (default 1)")
    p.add_argument("--quick", action="store_true", help="a tiny MLP setting, 2 trials, 2 final seeds, written "
                                                        "to the scratch folder (also GRAWA_QUICK=1)")
    p.add_argument("--final-seeds", type=_converter(int, "final_seeds"), default=None,
                   help="fresh seeds of each best config in the final test comparison, 0 for none "
                        "(default: 5; quick: 2)")
    p.add_argument("--stale-after", type=_duration, default="24h",
                   help="retire (fail and run again) a RUNNING trial whose process cannot be checked from here (no "
                        "pid recorded, or another host) once it is this old: 90s, 30m, 24h, 2d (default: 24h)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="rewrite the generated tables of docs/results.md from figures/*.csv")
    p.add_argument("--check", action="store_true",
                   help="only compare: exit 1 when a committed table differs from what its CSV gives")
    p.add_argument("--doc", default=None, help="the markdown file (default: docs/results.md of the project)")
    p.add_argument("--figures", default=None, help="the folder of the summary CSVs (default: figures/ beside docs/)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("notebooks", help="execute notebooks/*.ipynb headless (regenerates their figures)")
    p.add_argument("paths", nargs="*", help="notebooks to run (default: every notebooks/*.ipynb)")
    p.add_argument("--quick", action="store_true",
                   help="the notebooks' quick mode: a few steps, one seed (sets GRAWA_QUICK=1)")
    p.add_argument("--device", default=None, help="sets $GRAWA_DEVICE for the notebooks' kernels: "
                                                  "what device='auto' means there "
                                                  "(default: $GRAWA_DEVICE as it is)")
    p.set_defaults(func=cmd_notebooks)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, ConfigWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)

    def command() -> int | None:
        args = build_parser().parse_args(argv)
        return args.func(args)

    try:
        return one_line_errors(command)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
