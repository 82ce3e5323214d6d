"""How a number looks in the report: a `string.Formatter` with the report's conventions.

Templates are Python format strings over a CSV row (``"{mean:.3f} ± {ci95:.3f}"``) with:
- a typographic minus (−) in every formatted number;
- ``:p`` for p-values: ``1`` from 0.995, two decimals from 0.1, two significant digits from 0.001,
  ``3e-4`` below;
- ``:e1`` / ``:e2`` for one / two significant digits in scientific notation (``2e-14``, ``1.7e8``);
- ``!m`` to name a method, net or measure as the figures do (``mgrawa+uniform`` → ``MGRAWA (uniform)``);
- a missing value (NaN, empty) prints as ``—``.
"""

from __future__ import annotations

import math
import string

LABELS = {  # methods, nets and measures as the figures name them
    "dp": "DP", "dp+sam": "DP+SAM", "localsgd": "LocalSGD", "easgd": "EASGD", "lsgd": "LSGD",
    "mgrawa": "MGRAWA", "lgrawa": "LGRAWA", "diloco": "DiLoCo",
    "mgrawa+uniform": "MGRAWA (uniform)", "lgrawa+uniform": "LGRAWA (uniform)",
    "cnn": "CNN", "cnn_bn": "BN CNN", "all": "both nets", "lambda_max": "λ_max", "ritz_sum": "Ritz sum",
    "trace": "Hutchinson trace",
    "eps_sharpness": "ε-sharpness (%)", "test_acc": "test accuracy", "gap": "train − test accuracy",
    "subopt": "F(x̄_T) − F*", "dist": "‖x̄_T − x*‖", "min_grad_sq": "min ‖∇F‖²", "mean_grad_sq": "mean ‖∇F‖²",
}
MISSING = "—"
MINUS = "−"


def method_label(name: object) -> str:
    """The display name of a method (``name`` itself when unknown); contrasts ``a - b`` name both sides."""
    text = str(name).replace(f" {MINUS} ", " - ")
    if " - " in text:
        return f" {MINUS} ".join(method_label(part) for part in text.split(" - "))
    return LABELS.get(text, text)


def format_p(p: float) -> str:
    """A p-value as the report prints it (see the module docstring)."""
    if p >= 0.995:
        return "1"
    if p >= 0.1:
        return f"{p:.2f}"
    if p >= 0.001:
        return f"{p:.2g}"
    return scientific(p)


def scientific(value: float, digits: int = 1) -> str:
    """``digits`` significant digits, exponent without padding: 2e-14, 5e+03 → 5e3, 1.7e8."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def is_missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


class CellFormatter(string.Formatter):
    """`string.Formatter` with the report's specs (``p``, ``e1``), conversion ``!m`` and the minus sign."""

    def format_field(self, value: object, format_spec: str) -> str:
        if is_missing(value):
            return MISSING
        if format_spec == "p":
            text = format_p(float(value))
        elif format_spec in ("e1", "e2", "e3"):
            text = scientific(float(value), int(format_spec[1]))
        else:
            text = super().format_field(value, format_spec)
            if isinstance(value, float) and value < 0 and text.startswith("-") and float(text) == 0:
                text = super().format_field(0.0, format_spec)  # no "−0.000"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = text.replace("-", MINUS)
        return text

    def convert_field(self, value: object, conversion: str | None) -> object:
        if conversion == "m":
            return method_label(value)
        return super().convert_field(value, conversion)


FORMATTER = CellFormatter()


def render(template: str, row: dict) -> str:
    """``template`` filled from ``row``; a missing field makes the whole cell ``—``, except an optional one
    (its name ends in ``?``, e.g. ``{smallest_detectable?:.2f}``), which alone is written ``—``."""
    names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    for name in names:
        key = name.split(".")[0].split("[")[0]
        if key.rstrip("?") not in row:
            raise KeyError(key.rstrip("?"))
        if not key.endswith("?") and is_missing(row[key]):
            return MISSING
    return FORMATTER.format(template.replace("?:", ":").replace("?}", "}").replace("?!", "!"), **row)
