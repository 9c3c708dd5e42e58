"""Reader studies of synthetic DES images: 000's BPE and lesion detection, 001's visual Turing test.

A ratings file has one of two layouts, told apart by its header (docs/reader-study.md has examples).

001's visual Turing test ("is this image real or synthetic?") has the truth per image, not per
case: the columns reader, image, truth, answer and optionally case_id, where image names the image
shown, truth and answer are "real" ("clinical" is accepted) or "synthetic", and case_id links a
real image to the synthetic one made from the same LE image (empty: the image is its own case).
Positive is "synthetic": sensitivity is the share of synthetic images called synthetic (001's true
negative rate, real being 001's positive), specificity the share of real images called real.

000's reader study has the truth per case, one rating per line with the columns
case_id, reader, endpoint, image, rating, truth:
- image: "clinical" (the real DES; "real" is accepted) or "synthetic";
- endpoint: free text. It is ordinal when its ratings are the letters a-d or
  the numbers 1-4 with more than two distinct values (BPE, BI-RADS a-d);
  binary otherwise, rated yes/no, 1/0, true/false or positive/negative
  (lesion present; 001's "is this image real?" belongs in the layout above, whose truth is per image);
- truth: the case's ground truth (e.g. biopsy), needed for binary endpoints.
  An ordinal endpoint may leave it empty on every line: each reader's rating
  of the clinical image is then the reference for that reader's rating of the
  synthetic image of the same case (000 scored synthetic BPE against the clinical scores).

Per endpoint, reader (and all readers pooled, as 000 did) and image, against the reference:
- binary: accuracy, sensitivity, specificity (000's formulae);
- ordinal: accuracy of the dichotomy minimal-mild (a-b) versus moderate-marked
  (c-d), as 000 reports BPE, and the quadratic-weighted Cohen's kappa.
Each with a 95 % percentile interval from bootstrap resampling of cases
(000: "1,000-sample bootstrap resampling at the case level"), every rating of a
drawn case with it, so the pooled rows are clustered by case; a resample
where a value is undefined (no positive case drawn) is left out of its interval.
Clinical against synthetic, per endpoint and reader: a two-sided Wilcoxon
signed-rank test over the cases rated on both images, of the per-case
correctness (1/0), or, where the clinical rating is the reference, of the
ratings themselves (a systematic shift, 000's BPE overestimation); p-values
are corrected by Benjamini-Hochberg across the endpoints (000, "Statistical analysis");
the pooled test treats reader x case pairs as independent, as 000 did.

Both layouts (the Turing test is one binary endpoint whose rows pool both images):
- McNemar's test, for binary endpoints, of the paired reads of the same reader and case on its clinical and its synthetic
  image (lesion seen on one only; for the Turing test, "synthetic" said of one only): exact binomial
  while the discordant pairs are fewer than EXACT_BELOW, else chi-square with continuity correction.
  Pooled over readers the pairs of one case are not independent: the test is clustered by case, the
  exact sign-flip of each case's discordance difference (which is the binomial test when every case
  holds one pair) while the discordant cases are fewer than EXACT_BELOW, else Durkalski et al.'s
  (Stat Med 2003) clustered chi-square (sum_k d_k)^2 / sum_k d_k^2, d_k = b_k - c_k of case k.
- Inter-reader agreement over the images every reader rated: Cohen's kappa for two readers
  (quadratic-weighted for ordinal endpoints, as 000), Fleiss' kappa (nominal) for more, each with
  a case-level bootstrap 95 % interval.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from VirtualContrastTraining.atomic import ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.evaluation_folder import csv_text
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS
from VirtualContrastTraining.evaluation.significance import benjamini_hochberg, wilcoxon_paired

COLUMNS = ("case_id", "reader", "endpoint", "image", "rating", "truth")
TURING_COLUMNS = ("reader", "image", "truth", "answer")   # and optionally case_id
TURING_ENDPOINT = "real or synthetic"
TURING_VALUES = {"real": 0, "clinical": 0, "synthetic": 1}   # 1: positive, the answer "synthetic"
BOTH_IMAGES = "real and synthetic"   # the image column of the Turing test's rows: every image shown
EXACT_BELOW = 25   # McNemar is exact while the discordant pairs (pooled: cases) are fewer than this
IMAGES = {"clinical": "clinical", "real": "clinical", "synthetic": "synthetic"}
ALL_READERS = "all readers"
BINARY = {"yes": 1, "no": 0, "1": 1, "0": 0, "true": 1, "false": 0, "positive": 1, "negative": 0}
ORDINAL = {"a": 1, "b": 2, "c": 3, "d": 4, "1": 1, "2": 2, "3": 3, "4": 4}
ORDINAL_LABELS = [1, 2, 3, 4]
HIGH = 3  # ordinal values from c (3) up are "moderate-marked" in 000's dichotomy
_CATEGORY = np.arange(len(ORDINAL_LABELS))
_HIGH_SIDE = _CATEGORY >= ORDINAL_LABELS.index(HIGH)
SAME_SIDE = _HIGH_SIDE[:, None] == _HIGH_SIDE[None, :]               # cells right in the a-b vs c-d dichotomy
QUADRATIC = np.subtract.outer(_CATEGORY, _CATEGORY).astype(float) ** 2  # kappa's disagreement weights
UNWEIGHTED = 1 - np.eye(2)   # Cohen's kappa of a binary endpoint: every disagreement weighs 1
MEASURES = ("accuracy", "sensitivity", "specificity", "kappa")
REFERENCE_TEXT = {"truth": "the truth column", "clinical": "each reader's own rating of the clinical image"}
TURING_TEXT = ("001's visual Turing test, each image against its own truth; positive is \"synthetic\": sensitivity "
               "= synthetic images called synthetic (001's true negative rate), specificity = real images called "
               "real (001's true positive rate)")


@dataclass(frozen=True)
class Rating:
    case_id: str
    reader: str
    endpoint: str
    image: str          # "clinical" or "synthetic"
    rating: int         # binary 0/1 or ordinal 1..4
    truth: int | None


@dataclass
class Endpoint:
    name: str
    kind: str           # "binary" or "ordinal"
    reference: str      # "truth" or "clinical" (see REFERENCE_TEXT)
    per_image: bool = False   # 001's Turing test: the truth is the image's (real or synthetic)


@dataclass
class ReaderStudyResult:
    path: Path
    endpoints: list[Endpoint]
    rows: list[dict[str, Any]]      # per endpoint, reader (or ALL_READERS), image: n, measures with 95 % CI
    tests: list[dict[str, Any]]     # per endpoint and reader: Wilcoxon clinical vs synthetic, p_bh
    n_resamples: int
    seed: int
    notes: list[str] = field(default_factory=list)
    mcnemar: list[dict[str, Any]] = field(default_factory=list)    # per binary endpoint and reader
    agreement: list[dict[str, Any]] = field(default_factory=list)  # per endpoint and image: Cohen/Fleiss kappa

    @property
    def table(self) -> str:
        return format_reader_table(self)


# --- reading -------------------------------------------------------------------------------

def _layout(path: Path, header: list[str]) -> tuple[str, ...]:
    """The columns of the file's layout: the Turing test's when the header has "answer", else 000's."""
    if "answer" not in header:
        columns, text = COLUMNS, (f"a ratings file has the columns {', '.join(COLUMNS)} (truth may be empty for "
                                  f"ordinal endpoints), or {', '.join(TURING_COLUMNS)}[, case_id] for "
                                  "001's real-or-synthetic test")
    else:
        columns = TURING_COLUMNS + (("case_id",) if "case_id" in header else ())
        text = f"a real-or-synthetic ratings file has the columns {', '.join(TURING_COLUMNS)} and optionally case_id"
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}: {text}")
    return columns


def _read_lines(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: stripped text}) of every non-blank data line, with the columns of the file's
    layout (_layout); InputError for a bad file or header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, "ratings file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the ratings file as UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    columns = _layout(path, header)
    lines = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        values = values + [""] * (len(header) - len(values))
        lines.append((reader.line_num, {c: values[header.index(c)].strip() for c in columns}))
    if not lines:
        raise InputError(path, "the ratings file has no ratings")
    return lines


def _kind(ratings: list[str]) -> str:
    """"ordinal" when the ratings are a-d or 1-4 with more than two distinct values, else "binary"."""
    distinct = set(ratings)
    letters, numbers = set("abcd"), {"1", "2", "3", "4"}
    return "ordinal" if len(distinct) > 2 and (distinct <= letters or distinct <= numbers) else "binary"


def _bad(path: Path, line: int, column: str, problem: str) -> InputError:
    return InputError(path, f"line {line}, column {column!r}: {problem}")


def read_ratings(path: str | os.PathLike) -> tuple[list[Rating], list[Endpoint]]:
    """The ratings of a reader-study file of either layout and its endpoints (kind and reference);
    InputError naming the file, line and column for anything that cannot be read."""
    path = Path(path)
    lines = _read_lines(path)
    if "answer" in lines[0][1]:
        return _turing_ratings(path, lines), [Endpoint(TURING_ENDPOINT, "binary", "truth", per_image=True)]

    def bad(line: int, column: str, problem: str) -> InputError:
        return _bad(path, line, column, problem)

    for line, row in lines:
        for column in ("case_id", "reader", "endpoint", "image", "rating"):
            if not row[column]:
                raise bad(line, column, "empty")
        if row["image"].lower() not in IMAGES:
            raise bad(line, "image", f"{row['image']!r} is neither 'clinical' (or 'real') nor 'synthetic'")
        if row["reader"] == ALL_READERS:
            raise bad(line, "reader", f"{ALL_READERS!r} is the name of the pooled rows; rename this reader")

    by_endpoint: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for line, row in lines:
        by_endpoint[row["endpoint"]].append((line, row))
    ratings: list[Rating] = []
    endpoints: list[Endpoint] = []
    for name, members in by_endpoint.items():
        kind = _kind([row["rating"].lower() for _, row in members])
        values = BINARY if kind == "binary" else ORDINAL
        needs_truth = kind == "binary" or any(row["truth"] for _, row in members)
        endpoints.append(Endpoint(name, kind, "truth" if needs_truth else "clinical"))
        truth_of: dict[str, tuple[int, int]] = {}
        seen: dict[tuple[str, str, str], int] = {}
        for line, row in members:
            rating = values.get(row["rating"].lower())
            if rating is None:
                allowed = ("yes/no, 1/0, true/false, positive/negative; an endpoint is ordinal when its ratings "
                           "are a-d or 1-4 with more than two distinct values" if kind == "binary" else "a-d or 1-4")
                raise bad(line, "rating",
                          f"{row['rating']!r} is not a rating of the {kind} endpoint {name!r} ({allowed})")
            if needs_truth and not row["truth"]:
                raise bad(line, "truth", f"empty, but endpoint {name!r} is " + (
                    "binary: every rating needs the case's truth (e.g. biopsy)" if kind == "binary" else
                    "ordinal with truth on other lines: give it on every line or on none"))
            truth = None
            if row["truth"]:
                truth = values.get(row["truth"].lower())
                if truth is None:
                    raise bad(line, "truth", f"{row['truth']!r} is not a value of the {kind} endpoint {name!r}")
                first = truth_of.setdefault(row["case_id"], (line, truth))
                if first[1] != truth:
                    raise bad(line, "truth", f"case {row['case_id']!r} has another truth on line {first[0]}")
            image = IMAGES[row["image"].lower()]
            key = (row["case_id"], row["reader"], image)
            if key in seen:
                raise bad(line, "rating", f"reader {row['reader']!r} rated the {image} image of case "
                          f"{row['case_id']!r} for {name!r} already on line {seen[key]}")
            seen[key] = line
            ratings.append(Rating(row["case_id"], row["reader"], name, image, rating, truth))
    return ratings, endpoints


def _turing_ratings(path: Path, lines: list[tuple[int, dict[str, str]]]) -> list[Rating]:
    """001's real-or-synthetic answers as Ratings: image "clinical" or "synthetic" by the image's truth,
    rating and truth 1 for "synthetic"; the case is case_id, or the image itself where that is empty."""
    ratings = []
    first_of: dict[str, tuple[int, str, str]] = {}       # image -> (line, truth, case) where first seen
    image_of: dict[tuple[str, str], tuple[int, str]] = {}  # (case, real|synthetic) -> (line, image)
    rated: dict[tuple[str, str], int] = {}                 # (reader, image) -> line
    for line, row in lines:
        for column in TURING_COLUMNS:
            if not row[column]:
                raise _bad(path, line, column, "empty")
        for column in ("truth", "answer"):
            if row[column].lower() not in TURING_VALUES:
                raise _bad(path, line, column, f"{row[column]!r} is neither 'real' (or 'clinical') nor 'synthetic'")
        reader, image, truth = row["reader"], row["image"], row["truth"].lower().replace("clinical", "real")
        case = row.get("case_id") or image
        if reader == ALL_READERS:
            raise _bad(path, line, "reader", f"{ALL_READERS!r} is the name of the pooled rows; rename this reader")
        if (reader, image) in rated:
            raise _bad(path, line, "image", f"reader {reader!r} rated image {image!r} already on line "
                       f"{rated[reader, image]}")
        rated[reader, image] = line
        first = first_of.setdefault(image, (line, truth, case))
        if first[1:] != (truth, case):
            column, said = ("truth", f"is {first[1]}") if first[1] != truth else ("case_id", f"is in case {first[2]!r}")
            raise _bad(path, line, column, f"image {image!r} {said} on line {first[0]}")
        other = image_of.setdefault((case, truth), (line, image))
        if other[1] != image:
            raise _bad(path, line, "image", f"case {case!r} has a second {truth} image: {other[1]!r} on line "
                       f"{other[0]} and {image!r} (a case links one real image and its synthetic one)")
        ratings.append(Rating(case, reader, TURING_ENDPOINT, "clinical" if truth == "real" else "synthetic",
                              TURING_VALUES[row["answer"].lower()], TURING_VALUES[truth]))
    return ratings


# --- measures ------------------------------------------------------------------------------

def _confusion(kind: str, reference: np.ndarray, rating: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Confusion matrices (..., k, k), rows the reference and columns the rating, counting each
    rating `weights[..., i]` times: ones for the study itself, case multiplicities for a bootstrap resample."""
    k, first = (2, 0) if kind == "binary" else (len(ORDINAL_LABELS), ORDINAL_LABELS[0])
    onehot = np.zeros((rating.size, k * k))
    onehot[np.arange(rating.size), (reference - first) * k + (rating - first)] = 1
    return (weights @ onehot).reshape(*weights.shape[:-1], k, k)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN (undefined) where the denominator is 0."""
    return np.divide(numerator, denominator, out=np.full(np.shape(numerator), np.nan), where=denominator != 0)


def _measures(kind: str, confusion: np.ndarray) -> dict[str, np.ndarray]:
    """MEASURES of one or many (bootstrap) confusion matrices; NaN where undefined or not applicable.

    Binary: accuracy, sensitivity, specificity (000's formulae). Ordinal: accuracy of the
    dichotomy a-b vs c-d and quadratic-weighted kappa, 1 - sum(w O) / sum(w E) with w = (i - j)^2
    and E the product of the marginals, as sklearn.metrics.cohen_kappa_score computes it (the
    tests check both against sklearn): thousands of resamples stay fast without a call per resample.
    """
    total = confusion.sum(axis=(-2, -1))
    undefined = np.full(total.shape, np.nan)
    if kind == "binary":
        tn, fp, fn, tp = confusion[..., 0, 0], confusion[..., 0, 1], confusion[..., 1, 0], confusion[..., 1, 1]
        return {"accuracy": _divide(tp + tn, total), "sensitivity": _divide(tp, tp + fn),
                "specificity": _divide(tn, tn + fp), "kappa": undefined}
    return {"accuracy": _divide((confusion * SAME_SIDE).sum(axis=(-2, -1)), total),
            "sensitivity": undefined, "specificity": undefined, "kappa": _weighted_kappa(confusion, QUADRATIC)}


def _weighted_kappa(confusion: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cohen's kappa 1 - sum(w O) / sum(w E) of confusion matrices (..., k, k), E the product of the marginals;
    NaN where the marginals leave no room for disagreement."""
    total = confusion.sum(axis=(-2, -1))
    expected = _divide(confusion.sum(-1)[..., :, None] * confusion.sum(-2)[..., None, :], total[..., None, None])
    return 1 - _divide((weights * confusion).sum(axis=(-2, -1)), (weights * expected).sum(axis=(-2, -1)))


def _fleiss_kappa(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fleiss' kappa (P - Pe) / (1 - Pe) of `counts` (items, categories: how many readers chose each), every item
    rated by the same number m of readers, the items counted `weights[..., i]` times (bootstrap resamples):
    P is the mean over items of (sum_j n_ij^2 - m) / (m (m - 1)), Pe = sum_j p_j^2 with p_j the share of all
    ratings in category j (Fleiss 1971)."""
    m = counts[0].sum()
    agreement = ((counts ** 2).sum(-1) - m) / (m * (m - 1))
    n_items = weights.sum(-1)
    observed = _divide(weights @ agreement, n_items)
    chance = (_divide(weights @ counts, (n_items * m)[..., None]) ** 2).sum(-1)
    return _divide(observed - chance, 1 - chance)


def _case_counts(n_cases: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_cases): how often each case is drawn in each bootstrap resample.

    The draws are numpy Generator(seed).integers(0, n_cases, (n_resamples, n_cases)), as
    scipy.stats.bootstrap draws them: with one rating per case the intervals equal scipy's.
    """
    draws = np.random.default_rng(seed).integers(0, n_cases, size=(n_resamples, n_cases))
    offsets = n_cases * np.arange(n_resamples)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_cases).reshape(n_resamples, n_cases)


def _row(endpoint: Endpoint, reader: str, image: str, items: list[tuple[Rating, int]],
         n_resamples: int, seed: int) -> dict[str, Any]:
    """One table row: the measures of `items` ((rating, reference) pairs), each with the 95 % percentile
    interval of its bootstrap resamples where it is defined."""
    cases = list(dict.fromkeys(r.case_id for r, _ in items))
    case_index = np.array([cases.index(r.case_id) for r, _ in items])
    rating = np.array([r.rating for r, _ in items])
    reference = np.array([ref for _, ref in items])
    confusion = _confusion(endpoint.kind, reference, rating, np.ones(len(items)))
    point = _measures(endpoint.kind, confusion)
    resampled = _measures(endpoint.kind, _confusion(endpoint.kind, reference, rating,
                                                    _case_counts(len(cases), n_resamples, seed)[:, case_index]))
    row: dict[str, Any] = {"endpoint": endpoint.name, "type": endpoint.kind, "reference": endpoint.reference,
                           "reader": reader, "image": image, "n": len(items), "n_cases": len(cases)}
    if endpoint.kind == "binary":
        row.update(n_correct=int(np.trace(confusion)), n_positive=int(confusion[1].sum()),
                   true_positive=int(confusion[1, 1]), n_negative=int(confusion[0].sum()),
                   true_negative=int(confusion[0, 0]))
    else:
        row["n_correct"] = int((confusion * SAME_SIDE).sum())
    for name in MEASURES:
        value, samples = float(point[name]), resampled[name][~np.isnan(resampled[name])]
        lo = hi = None
        if not np.isnan(value) and samples.size:
            lo, hi = (float(q) for q in np.percentile(samples, [2.5, 97.5]))
        row.update({name: None if np.isnan(value) else value, f"{name}_lo": lo, f"{name}_hi": hi})
    return row


def _wilcoxon(endpoint: Endpoint, reader: str, ratings: list[Rating]) -> dict[str, Any]:
    """Clinical against synthetic over the (reader, case) pairs rated on both images."""
    by_image: dict[str, dict[tuple[str, str], Rating]] = {"clinical": {}, "synthetic": {}}
    for r in ratings:
        by_image[r.image][(r.reader, r.case_id)] = r
    pairs = [(c, by_image["synthetic"][key]) for key, c in by_image["clinical"].items() if key in by_image["synthetic"]]

    def score(r: Rating) -> int:
        if endpoint.reference == "clinical":
            return r.rating
        if endpoint.kind == "binary":
            return int(r.rating == r.truth)
        return int((r.rating >= HIGH) == (r.truth >= HIGH))

    clinical = np.array([score(c) for c, _ in pairs], dtype=np.float64)
    synthetic = np.array([score(s) for _, s in pairs], dtype=np.float64)
    test = wilcoxon_paired(clinical, synthetic)
    return {"endpoint": endpoint.name, "reader": reader,
            "compared": "rating (1-4)" if endpoint.reference == "clinical" else "correct (1/0)",
            "n_pairs": test["n"], "clinical_mean": float(clinical.mean()) if pairs else None,
            "synthetic_mean": float(synthetic.mean()) if pairs else None,
            "statistic": test["statistic"], "p": test["p"], "note": test["note"]}


def _paired_reads(ratings: list[Rating]) -> list[tuple[Rating, Rating]]:
    """(clinical, synthetic) ratings of the same reader and case, for the cases rated on both images."""
    synthetic = {(r.reader, r.case_id): r for r in ratings if r.image == "synthetic"}
    return [(r, synthetic[r.reader, r.case_id]) for r in ratings
            if r.image == "clinical" and (r.reader, r.case_id) in synthetic]


def _sign_flip_p(differences: np.ndarray) -> float:
    """Two-sided exact p of sum(d_k) under H0 that each case's difference d_k is +d_k or -d_k with equal odds:
    the distribution of the sum over all 2^n sign patterns, built one case at a time."""
    magnitudes = np.abs(differences).astype(int)
    total = int(magnitudes.sum())
    distribution = np.zeros(2 * total + 1)
    distribution[total] = 1.0
    for d in magnitudes:   # |partial sums| <= total: np.roll never wraps a non-zero probability
        distribution = 0.5 * (np.roll(distribution, d) + np.roll(distribution, -d))
    observed = abs(int(differences.sum()))
    return float(min(1.0, distribution[np.abs(np.arange(-total, total + 1)) >= observed].sum()))


def mcnemar(b_of_case: dict[str, int], c_of_case: dict[str, int], clustered: bool) -> dict[str, Any]:
    """McNemar's test of b (positive on the clinical image only) against c (on the synthetic only), counted
    per case; `clustered` when a case holds several pairs (readers pooled). Module docstring for the methods."""
    b, c = sum(b_of_case.values()), sum(c_of_case.values())
    out: dict[str, Any] = {"clinical_only": b, "synthetic_only": c, "method": None, "statistic": None,
                           "p": None, "note": None}
    if b + c == 0:
        out["note"] = "no test: no discordant pairs"
        return out
    if not clustered:
        if b + c < EXACT_BELOW:
            out.update(method="exact binomial", statistic=float(min(b, c)),
                       p=float(stats.binomtest(b, b + c, 0.5).pvalue))
        else:
            statistic = (abs(b - c) - 1) ** 2 / (b + c)
            out.update(method="chi-square, continuity-corrected", statistic=statistic,
                       p=float(stats.chi2.sf(statistic, 1)))
        return out
    differences = np.array([b_of_case.get(k, 0) - c_of_case.get(k, 0) for k in b_of_case.keys() | c_of_case.keys()])
    differences = differences[differences != 0]
    if differences.size < EXACT_BELOW:
        out.update(method="exact sign-flip, clustered by case", statistic=float(differences.sum()),
                   p=_sign_flip_p(differences))
    else:
        statistic = float(differences.sum()) ** 2 / float((differences ** 2).sum())
        out.update(method="Durkalski chi-square, clustered by case", statistic=statistic,
                   p=float(stats.chi2.sf(statistic, 1)))
    return out


def _mcnemar_row(endpoint: Endpoint, reader: str, ratings: list[Rating]) -> dict[str, Any]:
    """McNemar's test of one binary endpoint and reader (or all readers, clustered by case)."""
    b: dict[str, int] = defaultdict(int)
    c: dict[str, int] = defaultdict(int)
    pairs = _paired_reads(ratings)
    for clinical, synthetic in pairs:
        b[clinical.case_id] += clinical.rating > synthetic.rating
        c[clinical.case_id] += synthetic.rating > clinical.rating
    row = {"endpoint": endpoint.name, "reader": reader, "n_pairs": len(pairs),
           "n_cases": len({k.case_id for k, _ in pairs}), **mcnemar(b, c, clustered=reader == ALL_READERS)}
    if not pairs:
        row["note"] = "no test: no case with both its images read (case_id links them)"
    return row


def _agreement_row(endpoint: Endpoint, image: str, ratings: list[Rating], n_resamples: int,
                   seed: int) -> dict[str, Any] | None:
    """Cohen's (two readers) or Fleiss' kappa over the images every reader rated, with a case-level bootstrap
    95 % interval; None with fewer than two readers."""
    readers = list(dict.fromkeys(r.reader for r in ratings))
    if len(readers) < 2:
        return None
    by_image: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for r in ratings:
        by_image[r.case_id, r.image][r.reader] = r.rating
    items = [(key, [given[reader] for reader in readers]) for key, given in by_image.items()
             if len(given) == len(readers)]
    row: dict[str, Any] = {"endpoint": endpoint.name, "image": image, "readers": " ".join(readers),
                           "n_images": len(items), "n_cases": len({key[0] for key, _ in items}),
                           "statistic": None, "kappa": None, "kappa_lo": None, "kappa_hi": None}
    if not items:
        return row
    cases = list(dict.fromkeys(key[0] for key, _ in items))
    weights = _case_counts(len(cases), n_resamples, seed)[:, [cases.index(key[0]) for key, _ in items]]
    values = np.array([given for _, given in items])
    first = 0 if endpoint.kind == "binary" else ORDINAL_LABELS[0]
    if len(readers) == 2:
        row["statistic"] = "Cohen's κ" + (" (quadratic)" if endpoint.kind == "ordinal" else "")
        disagreement = UNWEIGHTED if endpoint.kind == "binary" else QUADRATIC
        kappa, resampled = (_weighted_kappa(_confusion(endpoint.kind, values[:, 0], values[:, 1], w), disagreement)
                            for w in (np.ones(len(items)), weights))
    else:
        row["statistic"] = "Fleiss' κ"
        k = 2 if endpoint.kind == "binary" else len(ORDINAL_LABELS)
        counts = (values[:, :, None] - first == np.arange(k)).sum(1).astype(float)
        kappa, resampled = (_fleiss_kappa(counts, w) for w in (np.ones(len(items)), weights))
    resampled = resampled[~np.isnan(resampled)]
    if not np.isnan(kappa):
        row["kappa"] = float(kappa)
        if resampled.size:
            row["kappa_lo"], row["kappa_hi"] = (float(q) for q in np.percentile(resampled, [2.5, 97.5]))
    return row


def _turing_rows(endpoint: Endpoint, ratings: list[Rating], n_resamples: int, seed: int,
                 result: ReaderStudyResult) -> None:
    """001's Turing test: every image against its own truth, per reader and pooled, then McNemar and agreement."""
    readers = list(dict.fromkeys(r.reader for r in ratings))
    groups = [(reader, [r for r in ratings if r.reader == reader]) for reader in readers]
    groups += [(ALL_READERS, ratings)] if len(readers) > 1 else []
    for reader, group in groups:
        result.rows.append(_row(endpoint, reader, BOTH_IMAGES, [(r, r.truth) for r in group], n_resamples, seed))
        result.mcnemar.append(_mcnemar_row(endpoint, reader, group))
    agreement = _agreement_row(endpoint, BOTH_IMAGES, ratings, n_resamples, seed)
    result.agreement += [agreement] if agreement else []


def reader_study(path: str | os.PathLike, n_resamples: int = 1000, seed: int = 0) -> ReaderStudyResult:
    """Analyse a reader-study ratings file (module docstring): measures with bootstrap CIs and Wilcoxon tests."""
    if n_resamples < 1:
        raise InputError(None, f"the number of bootstrap resamples must be at least 1, got {n_resamples}")
    ratings, endpoints = read_ratings(path)
    result = ReaderStudyResult(Path(path), endpoints, [], [], n_resamples, seed)
    for endpoint in endpoints:
        mine = [r for r in ratings if r.endpoint == endpoint.name]
        if endpoint.per_image:
            _turing_rows(endpoint, mine, n_resamples, seed, result)
            continue
        clinical_of = {(r.reader, r.case_id): r.rating for r in mine if r.image == "clinical"}
        readers = list(dict.fromkeys(r.reader for r in mine))
        groups = [(reader, [r for r in mine if r.reader == reader]) for reader in readers]
        if len(readers) > 1:
            groups.append((ALL_READERS, mine))
        unreferenced = 0
        for reader, group in groups:
            for image in ("clinical", "synthetic"):
                items = []
                for r in group:
                    if r.image != image:
                        continue
                    reference = r.truth if endpoint.reference == "truth" else (
                        clinical_of.get((r.reader, r.case_id)) if image == "synthetic" else None)
                    if reference is not None:
                        items.append((r, reference))
                    elif image == "synthetic" and reader != ALL_READERS:
                        unreferenced += 1
                if items:
                    result.rows.append(_row(endpoint, reader, image, items, n_resamples, seed))
            result.tests.append(_wilcoxon(endpoint, reader, group))
            if endpoint.kind == "binary":
                result.mcnemar.append(_mcnemar_row(endpoint, reader, group))
        for image in ("clinical", "synthetic"):
            agreement = _agreement_row(endpoint, image, [r for r in mine if r.image == image], n_resamples, seed)
            result.agreement += [agreement] if agreement else []
        if unreferenced:
            result.notes.append(f"{endpoint.name}: {unreferenced} synthetic rating(s) without the same reader's "
                                "clinical rating of the case have no reference and were left out.")
    for reader in dict.fromkeys(t["reader"] for t in result.tests):
        tests = [t for t in result.tests if t["reader"] == reader]
        for test, q in zip(tests, benjamini_hochberg([t["p"] for t in tests])):
            test["p_bh"] = q
    return result


# --- output --------------------------------------------------------------------------------

def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _cell(row: dict[str, Any], name: str, count: tuple[str, str] | None = None) -> str:
    """"90.5 % (57/63) [83.3, 96.8]" for a proportion, "0.52 [0.22, 0.72]" for kappa, "n/a" where undefined."""
    value = row[name]
    if value is None:
        return "n/a"
    lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
    if name == "kappa":
        text = f"{value:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")
    else:
        text = _percent(value) + (f" ({row[count[0]]}/{row[count[1]]})" if count else "")
        text += f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else ""
    return text


def _number(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else f"{value:{fmt}}"


def format_reader_table(result: ReaderStudyResult) -> str:
    """Markdown: the endpoints, the measures with their 95 % CIs, and the Wilcoxon, McNemar and agreement tables
    (each only where the study has one)."""
    measured = {"binary": "accuracy, sensitivity, specificity",
                "ordinal": "accuracy of a-b vs c-d, quadratic-weighted κ"}
    lines = [f"- **{e.name}**: " + (TURING_TEXT if e.per_image else
                                     f"{e.kind} ({measured[e.kind]}), against {REFERENCE_TEXT[e.reference]}")
             for e in result.endpoints]
    lines += ["", f"Measures with 95 % bootstrap CIs ({result.n_resamples} resamples of cases, "
              f"seed {result.seed}):", "",
              "| endpoint | reader | image | n | accuracy | sensitivity | specificity | κ (quadratic) |",
              "|---|---|---|---|---|---|---|---|"]
    for row in result.rows:
        binary = row["type"] == "binary"
        cells = [row["endpoint"], row["reader"], row["image"], str(row["n"]),
                 _cell(row, "accuracy", ("n_correct", "n")),
                 _cell(row, "sensitivity", ("true_positive", "n_positive") if binary else None),
                 _cell(row, "specificity", ("true_negative", "n_negative") if binary else None),
                 _cell(row, "kappa")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _wilcoxon_table(result) + _mcnemar_table(result) + _agreement_table(result)
                     + [f"\n{note}" for note in result.notes])


def _wilcoxon_table(result: ReaderStudyResult) -> list[str]:
    if not result.tests:
        return []
    lines = ["", "Clinical vs synthetic, two-sided Wilcoxon signed-rank test over the cases rated on both images; "
             "p (BH): Benjamini-Hochberg across the endpoints of each reader row:", "",
             "| endpoint | reader | compared | pairs | clinical mean | synthetic mean | W | p | p (BH) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in result.tests:
        p = _number(t["p"], ".4f") if t["p"] is not None else (t["note"] or "n/a")
        cells = [t["endpoint"], t["reader"], t["compared"], str(t["n_pairs"]), _number(t["clinical_mean"], ".3f"),
                 _number(t["synthetic_mean"], ".3f"), _number(t["statistic"], "g"), p, _number(t["p_bh"], ".4f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mcnemar_table(result: ReaderStudyResult) -> list[str]:
    if not result.mcnemar:
        return []
    lines = ["", "Paired reads, McNemar's test: the same reader and case, its clinical (real) and its synthetic image; "
             "positive is \"yes\" (lesion seen), or \"synthetic\" in the real-or-synthetic test. Exact binomial below "
             f"{EXACT_BELOW} discordant pairs; \"{ALL_READERS}\" is clustered by case:", "",
             "| endpoint | reader | pairs | cases | positive on clinical only | positive on synthetic only | method "
             "| statistic | p |", "|---|---|---|---|---|---|---|---|---|"]
    for t in result.mcnemar:
        cells = [t["endpoint"], t["reader"], str(t["n_pairs"]), str(t["n_cases"]), str(t["clinical_only"]),
                 str(t["synthetic_only"]), t["method"] or t["note"], _number(t["statistic"], ".4g"),
                 _number(t["p"], ".4f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _agreement_table(result: ReaderStudyResult) -> list[str]:
    if not result.agreement:
        return []
    lines = ["", "Inter-reader agreement over the images every reader rated (Cohen's κ for two readers, "
             "Fleiss' κ for more), 95 % bootstrap CIs over cases:", "",
             "| endpoint | image | readers | images | cases | statistic | κ |", "|---|---|---|---|---|---|---|"]
    for a in result.agreement:
        kappa = "n/a" if a["kappa"] is None else f"{a['kappa']:.2f}" + (
            f" [{a['kappa_lo']:.2f}, {a['kappa_hi']:.2f}]" if a["kappa_lo"] is not None else "")
        cells = [a["endpoint"], a["image"], a["readers"], str(a["n_images"]), str(a["n_cases"]),
                 a["statistic"] or "n/a", kappa]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_reader_study(result: ReaderStudyResult, out_dir: str | os.PathLike) -> list[Path]:
    """reader_study.md (the tables with the method), reader_study.csv (one line per row),
    reader_study_wilcoxon.csv (one line per test), reader_study_mcnemar.csv and reader_study_agreement.csv,
    written atomically into `out_dir`; a CSV with nothing to hold (no test of its kind) is not written."""
    out_dir = ensure_writable_dir(out_dir)
    markdown = "\n".join([
        "# Reader study", "", f"> **{NOT_FOR_DIAGNOSIS}**", "",
        f"Ratings: `{result.path.resolve()}`. Method of Zormpas-Petridis et al. 2026 (000): accuracy, "
        "sensitivity and specificity of binary findings against the truth; BPE-like ordinal scores as "
        "minimal-mild (a-b) vs moderate-marked (c-d) accuracy and quadratic-weighted Cohen's κ; "
        "001's visual Turing test with the truth of each image. "
        f"\"{ALL_READERS}\" pools the readers' ratings: its intervals resample cases (every reader's ratings "
        "of a case together) and its McNemar test is clustered by case; its Wilcoxon test treats reader × case "
        "pairs as independent evaluations, as 000 did.", "",
        format_reader_table(result), ""])
    written = {"reader_study.md": markdown, "reader_study.csv": csv_text(result.rows)}
    for name, rows in (("wilcoxon", result.tests), ("mcnemar", result.mcnemar), ("agreement", result.agreement)):
        if rows:
            written[f"reader_study_{name}.csv"] = csv_text(rows)
    for name, text in written.items():
        write_text_atomic(out_dir / name, text)
    return [out_dir / name for name in written]
