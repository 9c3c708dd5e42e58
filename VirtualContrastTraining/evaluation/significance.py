"""The papers' statistics on per-image results: paired model comparisons, density groups, folds, correlation.

Every function takes per_image.csv rows (evaluate.py; report.py reads them
back), as dicts whose metric values are floats, None, or the CSV's text ("" is
undefined, "inf" an infinite PSNR): `as_float` reads both. Only finite values
enter a statistic; the tests themselves come from scipy.stats:

- 000 (Zormpas-Petridis et al. 2026, "Statistical analysis"): two-sided
  Wilcoxon signed-rank tests (scipy's `wilcoxon`), p-values corrected for
  multiple comparisons with Benjamini-Hochberg, Pearson correlation of the
  LE-to-DES change between real and synthetic images;
- 001 (Rofena et al. 2024, Table 4.2): metrics per ACR density category with a
  Kruskal-Wallis test across the categories; Tables 4.1 (and 002 Table I):
  mean ± sd across cross-validation folds of the per-fold mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats

from VirtualContrastTraining.errors import InputError

DENSITY_ORDER = ("a", "b", "c", "d")   # ACR BI-RADS breast composition categories
KRUSKAL_ROW = "Kruskal-Wallis p"       # group label of density_table's test entry


def as_float(value: Any) -> float | None:
    """A metric value as a float; None where undefined (None, empty text, NaN).

    "inf" stays +inf (PSNR of a perfect prediction); text that is no number is a ValueError.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    return None if math.isnan(number) else number


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd (ddof=1); None where undefined (no values; sd of one value)."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def _finite(value: Any) -> float | None:
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else None


def _cell(row: dict[str, Any], column: str) -> float | None:
    """The finite value of `column` in one per-image row, or None; InputError naming model, case and column."""
    try:
        return _finite(row.get(column))
    except ValueError as exc:
        raise InputError(None, f"model {row.get('model')!r}, case {row.get('case_id')!r}, "
                         f"column {column!r}: {exc}") from None


def describe(rows: list[dict[str, Any]], metrics: Iterable[str]) -> dict[str, Any]:
    """`<M>_mean`, `<M>_sd` (sample sd) and `<M>_n` over the finite values of each metric: the one mean ± sd
    of the project (evaluate.summarize per model, the report's tables, across_folds over fold means)."""
    entry: dict[str, Any] = {}
    for m in metrics:
        finite = [v for v in (_cell(r, m) for r in rows) if v is not None]
        entry[f"{m}_mean"], entry[f"{m}_sd"] = mean_sd(finite)
        entry[f"{m}_n"] = len(finite)
    return entry


def _by_case(rows: list[dict[str, Any]], model: str, metric: str) -> dict[str, float | None]:
    """{case_id: finite value or None} of one model, in row order; a case twice is an InputError."""
    values: dict[str, float | None] = {}
    for r in rows:
        if r.get("model") != model:
            continue
        case = r.get("case_id")
        if case in values:
            raise InputError(None, f"case {case!r} appears twice for model {model!r}")
        values[case] = _cell(r, metric)
    return values


def paired_values(rows: list[dict[str, Any]], model_a: str, model_b: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of `metric` for A and B on the cases where both are finite, paired by case_id (A's row order)."""
    a, b = _by_case(rows, model_a, metric), _by_case(rows, model_b, metric)
    pairs = [(va, b[case]) for case, va in a.items() if va is not None and b.get(case) is not None]
    return (np.array([p[0] for p in pairs], dtype=np.float64), np.array([p[1] for p in pairs], dtype=np.float64))


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired samples (scipy's defaults, as 000 used them).

    {"n", "median_a", "median_b", "median_difference" (median of A - B), "statistic", "p", "note"};
    statistic and p are None, with the reason in "note", when n < 2 or every difference is 0.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    n = a.size
    out: dict[str, Any] = {"n": n, "median_a": None, "median_b": None, "median_difference": None,
                           "statistic": None, "p": None, "note": None}
    if n:
        out.update(median_a=float(np.median(a)), median_b=float(np.median(b)),
                   median_difference=float(np.median(a - b)))
    if n < 2:
        out["note"] = f"no test: {n} paired value(s), at least 2 needed"
    elif np.all(a == b):
        out["note"] = "no test: all paired differences are 0"
    else:
        result = stats.wilcoxon(a, b, alternative="two-sided")
        out.update(statistic=float(result.statistic), p=_none_if_nan(result.pvalue))
    return out


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control); None stays None
    and does not count as a test."""
    tested = [i for i, p in enumerate(pvalues) if p is not None]
    adjusted: list[float | None] = [None] * len(pvalues)
    if tested:
        for i, q in zip(tested, stats.false_discovery_control([pvalues[i] for i in tested], method="bh")):
            adjusted[i] = float(q)
    return adjusted


def wilcoxon_models(rows: list[dict[str, Any]], model_a: str, model_b: str,
                    metrics: Iterable[str]) -> list[dict[str, Any]]:
    """Model A against model B per metric, paired by case: wilcoxon_paired plus "metric" and "p_bh",
    the p-value adjusted by Benjamini-Hochberg over the metrics of this call (000)."""
    results = [{"metric": m, **wilcoxon_paired(*paired_values(rows, model_a, model_b, m))} for m in metrics]
    for entry, q in zip(results, benjamini_hochberg([e["p"] for e in results])):
        entry["p_bh"] = q
    return results


def _group_key(group: str) -> tuple[int, str]:
    """ACR categories a..d first, in order, then any other group names alphabetically."""
    return (0, group) if group in DENSITY_ORDER else (1, group)


def _groups(rows: list[dict[str, Any]], model: str, group: str) -> dict[str, list[dict[str, Any]]]:
    """{group value: rows of `model`}, sorted by _group_key; rows with an empty group value are left out."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        key = str(r.get(group) or "").strip()
        if r.get("model") == model and key:
            found[key].append(r)
    return {k: found[k] for k in sorted(found, key=_group_key)}


def kruskal_by_group(rows: list[dict[str, Any]], model: str, metric: str, group: str = "density") -> dict[str, Any]:
    """Kruskal-Wallis H test of one model's `metric` across the values of `group` (001 Table 4.2).

    {"groups": {group: n finite values}, "statistic", "p", "note"}; groups without a finite value are
    left out, and with fewer than 2 groups left (or all values equal) there is no test.
    """
    samples = {}
    for key, members in _groups(rows, model, group).items():
        values = [v for v in (_cell(r, metric) for r in members) if v is not None]
        if values:
            samples[key] = values
    out: dict[str, Any] = {"groups": {k: len(v) for k, v in samples.items()},
                           "statistic": None, "p": None, "note": None}
    if len(samples) < 2:
        out["note"] = f"no test: {len(samples)} {group} group(s) with values, at least 2 needed"
    elif len({v for values in samples.values() for v in values}) == 1:
        out["note"] = "no test: all values are equal"
    else:
        result = stats.kruskal(*samples.values())
        out.update(statistic=float(result.statistic), p=_none_if_nan(result.pvalue))
    return out


def pearson(x: Sequence[Any], y: Sequence[Any]) -> dict[str, Any]:
    """Pearson r and its two-sided p (scipy.stats.pearsonr) over the pairs finite in both series (000).

    {"r", "p", "n", "note"}: r and p are None, with the reason, when n < 3 or a series is constant.
    """
    if len(x) != len(y):
        raise ValueError(f"pearson: series of different lengths ({len(x)} and {len(y)})")
    pairs = [(a, b) for a, b in zip(map(_finite, x), map(_finite, y)) if a is not None and b is not None]
    out: dict[str, Any] = {"r": None, "p": None, "n": len(pairs), "note": None}
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if len(pairs) < 3:
        out["note"] = f"no correlation: {len(pairs)} pair(s), at least 3 needed"
    elif np.ptp(xs) == 0 or np.ptp(ys) == 0:
        out["note"] = "no correlation: a series is constant"
    else:
        result = stats.pearsonr(xs, ys)
        out.update(r=float(result.statistic), p=_none_if_nan(result.pvalue))
    return out


def across_folds(fold_rows: list[dict[str, Any]], metrics: Iterable[str]) -> list[dict[str, Any]]:
    """Cross-validation as 001 and 002 report it, from one row per fold and model holding model, n_images
    and each metric's mean over that fold's images: per model (in order of appearance) n_folds, n_images
    (over all folds) and, by `describe`, `<M>_mean`, `<M>_sd` (sample sd across folds) and `<M>_n` (folds
    with a value). fold_table feeds it per-image rows' fold means, compare those of each fold's summary.csv.
    """
    metrics = list(metrics)
    table = []
    for model in dict.fromkeys(r["model"] for r in fold_rows):
        mine = [r for r in fold_rows if r["model"] == model]
        table.append({"model": model, "n_folds": len(mine), "n_images": sum(r["n_images"] for r in mine),
                      **describe(mine, metrics)})
    return table


def fold_table(per_fold_rows: dict[str, list[dict[str, Any]]], metrics: Iterable[str]) -> list[dict[str, Any]]:
    """across_folds of per-image rows: per fold and model the mean over that fold's images (describe), then
    per model the mean and sample sd of those fold means."""
    metrics = list(metrics)
    fold_rows = []
    for rows in per_fold_rows.values():
        for model in dict.fromkeys(r.get("model") for r in rows):
            mine = [r for r in rows if r.get("model") == model]
            described = describe(mine, metrics)
            fold_rows.append({"model": model, "n_images": len(mine), **{m: described[f"{m}_mean"] for m in metrics}})
    return across_folds(fold_rows, metrics)


def density_table(rows: list[dict[str, Any]], model: str, metrics: Iterable[str],
                  group: str = "density") -> list[dict[str, Any]]:
    """One model's metrics per ACR density category with the Kruskal-Wallis test across them (001 Table 4.2).

    One entry per group value (a..d first, then others): {group: value, "n": images,
    `<M>_mean`, `<M>_sd`, `<M>_n`}, then one last entry {group: KRUSKAL_ROW, "n": None,
    `<M>_p`, `<M>_statistic`, `<M>_note`} holding each metric's kruskal_by_group result.
    Rows with an empty group value are left out.
    """
    metrics = list(metrics)
    table = [{group: key, "n": len(members), **describe(members, metrics)}
             for key, members in _groups(rows, model, group).items()]
    test: dict[str, Any] = {group: KRUSKAL_ROW, "n": None}
    for m in metrics:
        result = kruskal_by_group(rows, model, m, group)
        test.update({f"{m}_p": result["p"], f"{m}_statistic": result["statistic"], f"{m}_note": result["note"]})
    return table + [test]
