"""The tables of docs/results.md: for each marker name, the summary CSV it reads and how it is written.

The CSVs (``figures/<study>_<table>.csv``) are written by the runs that draw the figures: `reproduce`
(comparison), `anchor`, and the notebooks (quickstart, time budget, non-IID, convergence, mechanism,
weights, flatness, scalability, communication).
"""

from __future__ import annotations

import dataclasses

from grawa_sim.report.tables import Column, Pivot, Rows, Table

ACC = "{test_acc_mean:.3f} ± {test_acc_ci95:.3f}"
ACC_FINISHED = "{test_acc_mean_finished:.3f} ± {test_acc_ci95_finished:.3f}"
DIFF_CI = "{difference:+.3f} [{low:+.3f}, {high:+.3f}]"
ONE_TWIN = ("dp", "localsgd", "mgrawa", "lgrawa", "mgrawa+uniform", "easgd", "lsgd")  # the twins are one run


def _contrast_rows(csv: str, where: dict | None = None) -> Rows:
    return Rows(csv, (
        Column("contrast", "{contrast!m}"),
        Column("n", "{n}"),
        Column("difference [95 % CI]", DIFF_CI),
        Column("p", "{p:p}"),
        Column("Holm p", "{p_holm:p}", bold_if="significant_holm"),
        Column("detectable", "{smallest_detectable:.3f}"),
    ), where=where or {})


COMPARISON = {
    "comparison_summary": Rows("comparison_summary", (
        Column("method", "{algorithm!m}"),
        Column("test acc (mean ± 95 % CI)", ACC),
        Column("n", "{n}/{total}"),
        Column("worst seed", "{test_acc_worst:.3f}"),
        Column("− LocalSGD (paired)", "{diff_vs_ref:+.3f}", only_if="p_vs_ref"),
        Column("Holm p", "{p_holm:p}", bold_if="significant"),
        Column("spread ‖x_i − x̄‖", "{spread:.2f}"),
    )),
    "comparison_contrasts": _contrast_rows("comparison_contrasts"),
}

ANCHOR = {
    "anchor_single": Rows("anchor_single", (
        Column("model (one worker)", "{model}"),
        Column("published", "{published:.2f}"),
        Column("grawa-sim (mean ± 95 % CI)", ACC),
        Column("n", "{n}"),
    )),
    "anchor_ensemble": Rows("anchor_ensemble", (
        Column("1-D CNN, M = 8", "{algorithm!m}"),
        Column("test acc (mean ± 95 % CI)", ACC),
        Column("n", "{n}/{total}"),
        Column("− LocalSGD (paired)", "{diff_vs_ref:+.3f}", only_if="p_vs_ref"),
        Column("Holm p", "{p_holm:p}", bold_if="significant"),
    )),
}

QUICKSTART = {
    "quickstart_summary": Rows("quickstart_summary", (
        Column("method", "{algorithm!m}"),
        Column("test acc (one seed)", "{test_acc_mean:.3f}"),
        Column("test loss", "{test_loss:.3f}"),
    )),
}

TWIN_CONTRASTS = ("mgrawa − mgrawa+uniform", "lgrawa − lgrawa+uniform")
BASELINE_CONTRASTS = ("mgrawa − dp", "lgrawa − dp", "mgrawa − localsgd", "lgrawa − localsgd")
TWIN_CELL = DIFF_CI + " (Holm {p_holm:p}; detectable {smallest_detectable:.3f})"
HOLM_CELL = "{difference:+.3f} ({p_holm:p})"


def _budget(budget: float) -> dict:
    return {
        f"time_budget_accuracy_{budget:g}s": Pivot("time_budget_accuracy", "setting", "method", ACC_FINISHED,
                                                   "network, stragglers", where={"budget": budget},
                                                   column_order=ONE_TWIN),
        f"time_budget_twin_{budget:g}s": Pivot("time_budget_contrasts", "setting", "contrast", TWIN_CELL,
                                               "network, stragglers", where={"budget": budget,
                                                                             "contrast": TWIN_CONTRASTS},
                                               bold_if="significant_holm"),
        f"time_budget_baselines_{budget:g}s": Pivot("time_budget_contrasts", "setting", "contrast", HOLM_CELL,
                                                    "network, stragglers",
                                                    where={"budget": budget, "contrast": BASELINE_CONTRASTS},
                                                    column_order=BASELINE_CONTRASTS, bold_if="significant_holm"),
    }


TIME_BUDGET = {
    **_budget(6.0), **_budget(2.0),
    "time_budget_times": Pivot("time_budget_times", "setting", "method",
                               "{time_mean:.1f} ± {time_ci95:.1f} ({reached}/{runs})", "network, stragglers",
                               where={"level": 0.9}, column_order=ONE_TWIN),
}

NONIID = {
    "noniid_accuracy": Pivot("noniid_accuracy", "shards", "method", ACC_FINISHED, "shards", column_order=ONE_TWIN),
    "noniid_twin": Pivot("noniid_contrasts", "contrast", "setting", DIFF_CI + " ({p_holm:p})", "contrast (Holm p)",
                         row_label="{value!m}", column_label="{value}", where={"contrast": TWIN_CONTRASTS},
                         bold_if="significant_holm"),
    "noniid_detectable": Pivot("noniid_contrasts", "contrast", "setting", "{smallest_detectable:.3f}",
                               "smallest detectable difference", row_label="{value!m}", column_label="{value}",
                               where={"contrast": TWIN_CONTRASTS}),
    "noniid_baselines": Pivot("noniid_contrasts", "contrast", "setting", HOLM_CELL, "contrast (Holm p)",
                              row_label="{value!m}", column_label="{value}", row_order=BASELINE_CONTRASTS,
                              where={"contrast": BASELINE_CONTRASTS}, bold_if="significant_holm"),
    "noniid_correlation": Rows("noniid_correlation", (
        Column("method", "{method!m}"),
        Column("shards", "{shards}"),
        Column("Spearman ρ(weight, label entropy), mean ± 95 % CI", "{rho_mean:+.2f} ± {rho_ci95:.2f}"),
        Column("seeds", "{n}"),
        Column("Holm p", "{p_holm:p}"),
    )),
}

ALGORITHMS = ("dp", "localsgd", "easgd", "lsgd", "mgrawa", "lgrawa")


def _rates(problem: str) -> Pivot:
    return Pivot("convergence_rates", "algorithm", "workers",
                 "{reduction:e1} (slope {slope_subopt:.2f} ± {slope_subopt_ci95?:.2f})", "algorithm",
                 row_label="{value!m}",
                 column_label="M = {value}", where={"problem": problem}, row_order=(*ALGORITHMS, "mgrawa+uniform"))


CONVERGENCE = {
    "convergence_rates_lstsq": _rates("lstsq"),
    "convergence_rates_logistic": _rates("logistic"),
    "convergence_floors": Pivot("convergence_floors", "algorithm", "lr", "{floor:e1} ± {floor_ci95?:e1}",
                                "algorithm (logistic, M = 4)",
                                row_label="{value!m}", column_label="η = {value}",
                                where={"problem": "logistic", "workers": 4},
                                row_order=(*ALGORITHMS, "mgrawa+uniform")),
    "convergence_nonconvex_mean": Pivot("convergence_nonconvex", "algorithm", "T",
                                        "{mean_grad_sq_mean:.4f} ± {mean_grad_sq_ci95:.4f}",
                                        "mean ‖∇F‖² over the run, by horizon", row_label="{value!m}",
                                        column_label="T = {value}", row_order=(*ALGORITHMS, "mgrawa+uniform")),
    "convergence_nonconvex_min": Pivot("convergence_nonconvex", "algorithm", "T",
                                       "{min_grad_sq_mean:.4f} ({min_at_start:.0%} at t = 0)",
                                       "min ‖∇F‖² over the run (share of runs whose min is the start)",
                                       row_label="{value!m}", column_label="T = {value}",
                                       row_order=(*ALGORITHMS, "mgrawa+uniform")),
    "convergence_horizon_slopes": Pivot("convergence_horizon_slopes", "algorithm", "value",
                                        "{slope:+.2f} ± {slope_ci95:.2f} ({seeds})",
                                        "slope on log T, mean over seeds ± 95 % CI (seeds)", row_label="{value!m}",
                                        column_label="{value!m}", row_order=(*ALGORITHMS, "mgrawa+uniform")),
    "convergence_bias": Rows("convergence_bias", (
        Column("method", "{method!m}"),
        Column("F(x̄_T) − F*", "{subopt_mean:.4f} ± {subopt_ci95:.4f}"),
        Column("‖x̄_T − x*‖", "{dist_mean:.3f} ± {dist_ci95:.3f}"),
        Column("‖x_C − x*‖", "{dist_center_mean:.3f} ± {dist_center_ci95:.3f}"),
        Column("seeds", "{n}/{total}"),
    )),
    "convergence_bias_contrasts": Rows("convergence_bias_contrasts", (
        Column("measure", "{metric!m}"),
        *_contrast_rows("convergence_bias_contrasts").columns,
    )),
}

SHARE = "{model_wide:.2f} [{model_low:.2f}, {model_high:.2f}]"
BASIN_METHODS = ("dp", "localsgd", "easgd", "lsgd", "mgrawa", "lgrawa")


def _shares(csv: str) -> Rows:
    return Rows(csv, (
        Column("method", "{algorithm!m}"),
        Column("model ends wide (95 % Wilson CI)", SHARE),
        Column("own center ends wide", "{center_wide:.2f} [{center_low:.2f}, {center_high:.2f}]"),
        Column("workers end wide", "{worker_wide:.2f}"),
        Column("runs", "{runs}"),
    ))


def _versus(csv: str) -> Rows:
    return Rows(csv, (
        Column("method", "{algorithm!m}"),
        Column("wide share − LocalSGD's", "{difference:+.2f}"),
        Column("Fisher p", "{p:p}", bold_if="significant"),
    ))


MECHANISM = {
    "mechanism_shares": _shares("mechanism_shares"),
    "mechanism_versus": _versus("mechanism_versus"),
    "mechanism_tau": Pivot("mechanism_grid", "algorithm", "tau", SHARE, "model ends wide (λ = 0.5)",
                           row_label="{value!m}", column_label="τ = {value}", where={"pull": 0.5},
                           row_order=BASIN_METHODS),
    "mechanism_pull": Pivot("mechanism_grid", "algorithm", "pull", SHARE, "model ends wide (τ = 8)",
                            row_label="{value!m}", column_label="λ = {value}", where={"tau": 8},
                            row_order=("easgd", "lsgd", "mgrawa"), column_order=(0.1, 0.5, 1.0)),
    "mechanism_shares_10d": _shares("mechanism_shares_10d"),
    "mechanism_versus_10d": _versus("mechanism_versus_10d"),
    "mechanism_control_shares": Pivot("mechanism_control_shares", ("dim", "product", "method"), "tau",
                                      "{wide:.2f} [{low:.2f}, {high:.2f}]", "d, lr·κ_sharp, method: model ends wide",
                                      row_label="{dim}-D, {product:g}, {method!m}", column_label="τ = {value}"),
    "mechanism_control_contrasts": Pivot(
        "mechanism_control_contrasts", ("dim", "product", "contrast"), "tau",
        "{difference:+.2f} ({only_a}:{only_b}, {p_holm:p}; {smallest_detectable?:.2f})",
        "d, lr·κ_sharp, contrast: difference (discordant runs, Holm p; detectable at 5 %)",
        row_label="{dim}-D, {product:g}, {contrast!m}", column_label="τ = {value}", bold_if="significant_holm"),
    "weights_reliability": Rows("weights_reliability", (
        Column("design (pull λ, lr spread)", "λ = {pull}, {lr_spread:g}×"),
        Column("ρ(weight, λ_max)", "{rho_mean:+.3f} ± {rho_ci95:.3f}"),
        Column("p (t-test against 0)", "{p_rho:p}"),
        Column("score reliability r", "{reliability_mean:.2f} ± {reliability_ci95:.2f}"),
        Column("largest visible ρ, √r", "{ceiling_mean:.2f} ± {ceiling_ci95:.2f}"),
        Column("corrected ρ / √r", "{corrected_mean:+.3f} ± {corrected_ci95:.3f}"),
        Column("λ_max spread in a round (CV)", "{lambda_cv_mean:.3f} ± {lambda_cv_ci95:.3f}"),
        Column("seeds", "{seeds}"),
    )),
    "weights_by_worker": Rows("weights_by_worker", (
        Column("design (pull λ, lr spread)", "λ = {pull}, {lr_spread:g}×"),
        Column("worker", "{worker}"),
        Column("lr / 0.05", "{lr_factor:.2f}"),
        Column("weight", "{weight_mean:.3f} ± {weight_ci95:.3f}"),
        Column("full-batch ‖∇F‖", "{full_grad_norm_mean:.3f} ± {full_grad_norm_ci95:.3f}"),
        Column("λ_max", "{lambda_max_mean:.2f} ± {lambda_max_ci95:.2f}"),
        Column("seeds", "{seeds}"),
    )),
    "weights_correlation": Rows("weights_correlation", (
        Column("pair", "{pair}"),
        Column("Spearman ρ per round, mean over seeds ± 95 % CI", "{rho_mean:+.3f} ± {rho_half_width:.3f}"),
        Column("seeds / rounds", "{seeds} / {rounds}"),
        Column("rounds with ρ < 0", "{negative_share:.0%}"),
        Column("t-test against 0, p", "{p_vs_0:p}"),
    )),
}

NETS = {"cnn": "CNN", "cnn_bn": "BN CNN", "all": "both"}


def _flatness(csv: str, train_loss: bool = False) -> Rows:
    return Rows(csv, (
        Column("net", "{net!m}"),
        Column("method", "{method!m}"),
        Column("λ_max", "{lambda_max:.1f} ± {lambda_max_ci95:.1f}"),
        Column("Hutchinson trace", "{trace:.1f} ± {trace_ci95:.1f}"),
        Column("Ritz sum", "{ritz_sum:.1f} ± {ritz_sum_ci95:.1f}"),
        Column("ε-sharpness (%)", "{eps_sharpness:.1f} ± {eps_sharpness_ci95:.1f}"),
        Column("test acc", "{test_acc:.3f} ± {test_acc_ci95:.3f}"),
        *((Column("train loss", "{train_loss:.3f} ± {train_loss_ci95:.3f}"),) if train_loss else ()),
        Column("n", "{n}"),
    ))


FLAT_CONTRASTS = (Column("net", "{net!m}"), Column("measure", "{measure!m}"), Column("contrast", "{contrast!m}"),
                  Column("n", "{n}"), Column("difference [95 % CI]", "{difference:+.2f} [{low:+.2f}, {high:+.2f}]"),
                  Column("p", "{p:p}"), Column("Holm p", "{p_holm:p}", bold_if="significant_holm"),
                  Column("detectable", "{smallest_detectable:.2f}"))


FLATNESS = {
    **{f"flatness_{part}": _flatness(f"flatness_{part}", train_loss=True) for part in ("summary", "half", "centers")},
    "flatness_contrasts": Rows("flatness_contrasts", FLAT_CONTRASTS),
    "flatness_agreement": Rows("flatness_agreement", (
        Column("net", "{net!m}"), Column("measure", "{metric!m}"), Column("methods", "{methods}"),
        Column("Spearman ρ with the published table", "{spearman_rho:+.2f}"), Column("exact p", "{p:p}"),
        Column("critical ρ at 0.05 (two-sided)", "±{critical_rho:.3f}"))),
    "flatness_correlations": Rows("flatness_correlations", (
        Column("λ_max against", "{y!m}"), Column("net", "{net!m}"), Column("Spearman ρ", "{rho:+.2f}"),
        Column("p", "{p:p}"), Column("runs", "{n}"))),
}

GRAWAS = ("mgrawa", "lgrawa")
TREND_ROWS = (Column("contrast", "{contrast!m}"), Column("seeds", "{n}"),
              Column("change per doubling [95 % CI]", DIFF_CI), Column("p", "{p:p}"),
              Column("Holm p", "{p_holm:p}", bold_if="significant_holm"),
              Column("detectable", "{smallest_detectable:.3f}"))
TIME_CELL = "{time_mean:.2f} ± {time_ci95:.2f} ({reached}/{runs})"

SCALABILITY = {
    **{f"scalability_accuracy_{budget:g}s": Pivot("scalability_accuracy", "workers", "method", ACC_FINISHED, "M",
                                                  where={"budget": budget}, column_order=ONE_TWIN)
       for budget in (6.0, 2.0)},
    "scalability_twin": Pivot("scalability_contrasts", "setting", "contrast", TWIN_CELL, "M (6 s)",
                              where={"budget": 6.0, "contrast": TWIN_CONTRASTS}, bold_if="significant_holm"),
    "scalability_baselines": Pivot("scalability_contrasts", "setting", "contrast", HOLM_CELL, "M (6 s)",
                                   where={"budget": 6.0, "contrast": BASELINE_CONTRASTS},
                                   column_order=BASELINE_CONTRASTS, bold_if="significant_holm"),
    "scalability_trends": Rows("scalability_trends", TREND_ROWS),
    "scalability_times": Pivot("scalability_times", "workers", "method", TIME_CELL,
                               "M: simulated s to 90 % of the best", where={"level": 0.9}, column_order=ONE_TWIN),
    "scalability_entropy": Pivot("scalability_entropy", "workers", "algorithm",
                                 "{ratio_mean:.3f} ± {ratio_ci95:.3f}", "M: weight entropy / log M",
                                 column_order=GRAWAS),
}

PERIODIC = ("localsgd", "easgd", "lsgd", "mgrawa", "lgrawa", "mgrawa+uniform")  # the twins are one run

COMMUNICATION = {
    "communication_accuracy": Pivot("communication_accuracy", "setting", "method", ACC_FINISHED, "τ, λ (6 s)",
                                    where={"budget": 6.0}, column_order=ONE_TWIN),
    "communication_twin": Pivot("communication_contrasts", "setting", "contrast", TWIN_CELL, "τ, λ (6 s)",
                                where={"contrast": TWIN_CONTRASTS}, bold_if="significant_holm"),
    "communication_baselines": Pivot("communication_contrasts", "setting", "contrast", HOLM_CELL, "τ, λ (6 s)",
                                     where={"contrast": BASELINE_CONTRASTS}, column_order=BASELINE_CONTRASTS,
                                     bold_if="significant_holm"),
    "communication_trends": Rows("communication_trends", TREND_ROWS),
    "communication_rounds": Pivot("communication_times", "setting", "method",
                                  "{rounds_mean:.0f} in {time_mean:.2f} s ({reached}/{runs})",
                                  "τ, λ: rounds and simulated s to 90 % of the best", where={"level": 0.9},
                                  column_order=PERIODIC),
    "communication_pareto": Rows("communication_pareto", (
        Column("method", "{method!m}"), Column("τ", "{tau:.0f}"), Column("λ", "{pull:g}"),
        Column("test acc at 6 s", ACC_FINISHED), Column("rounds", "{rounds:.0f}"),
        Column("bytes", "{comm_bytes:e2}")), where={"front": True}),
}

MATCHED = {
    "flatness_matched_reached": Rows("flatness_matched_reached", (
        Column("net", "{net!m}"), Column("method", "{method!m}"), Column("reached / runs", "{reached}/{runs}"),
        Column("steps", "{steps_mean:.0f} ± {steps_ci95:.0f}"),
        Column("simulated s", "{seconds_mean:.3f} ± {seconds_ci95:.3f}"),
        Column("train loss at the stop", "{train_loss_mean:.4f}"))),
    **{f"flatness_matched_{part}": _flatness(f"flatness_matched_{part}") for part in ("summary", "half", "centers")},
    "flatness_matched_contrasts": Rows("flatness_matched_contrasts", FLAT_CONTRASTS),
    "flatness_matched_agreement": dataclasses.replace(FLATNESS["flatness_agreement"], csv="flatness_matched_agreement"),
}

TABLES: dict[str, Table] = {**COMPARISON, **ANCHOR, **QUICKSTART, **TIME_BUDGET, **NONIID, **CONVERGENCE,
                            **MECHANISM, **FLATNESS, **MATCHED, **SCALABILITY, **COMMUNICATION}
