"""evaluation/significance.py against scipy on the same data and against small cases computed by hand."""

from __future__ import annotations

import csv
import io
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.evaluation_folder import csv_text
from VirtualContrastTraining.evaluation.significance import (KRUSKAL_ROW, across_folds, as_float, benjamini_hochberg,
                                                             density_table, fold_table, kruskal_by_group, paired_values,
                                                             pearson, wilcoxon_models, wilcoxon_paired)


def rows_of(model: str, values: dict[str, dict], **common) -> list[dict]:
    """per_image rows of one model: {case_id: {column: value}}."""
    return [{"model": model, "case_id": case, **common, **cols} for case, cols in values.items()]


# --- as_float and pairing ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("  ", None), ("nan", None),
                                             (float("nan"), None), ("1.5", 1.5), (" 2 ", 2.0), (3, 3.0),
                                             ("inf", math.inf)])
def test_as_float_reads_csv_text_and_numbers(value, expected):
    assert as_float(value) == expected


def test_as_float_rejects_text_that_is_no_number():
    with pytest.raises(ValueError, match="'abc' is not a number"):
        as_float("abc")


def test_paired_values_keeps_cases_finite_for_both_models_in_a_order():
    rows = (rows_of("A", {"c1": {"PSNR": "30"}, "c2": {"PSNR": "inf"}, "c3": {"PSNR": 25.0}, "c4": {"PSNR": ""},
                          "c5": {"PSNR": "20"}})
            + rows_of("B", {"c5": {"PSNR": 19.0}, "c3": {"PSNR": "24"}, "c2": {"PSNR": 10.0}, "c1": {"PSNR": None},
                            "c4": {"PSNR": 5.0}}))
    a, b = paired_values(rows, "A", "B", "PSNR")
    np.testing.assert_array_equal(a, [25.0, 20.0])
    np.testing.assert_array_equal(b, [24.0, 19.0])


def test_paired_values_rejects_a_case_twice_and_text_that_is_no_number():
    twice = rows_of("A", {"c1": {"MSE": 1.0}}) * 2 + rows_of("B", {"c1": {"MSE": 2.0}})
    with pytest.raises(InputError, match="'c1' appears twice for model 'A'"):
        paired_values(twice, "A", "B", "MSE")
    bad = rows_of("A", {"c1": {"MSE": "0.1x"}}) + rows_of("B", {"c1": {"MSE": "0.2"}})
    with pytest.raises(InputError, match="case 'c1', column 'MSE': '0.1x' is not a number"):
        paired_values(bad, "A", "B", "MSE")


# --- Wilcoxon ------------------------------------------------------------------------------

def exact_two_sided_p(differences: list[float]) -> tuple[float, float]:
    """(exact two-sided Wilcoxon signed-rank p, min(W+, W-)) by enumerating every sign assignment
    of the ranks (no ties, no zeros)."""
    ranks = stats.rankdata(np.abs(differences))
    total = ranks.sum()
    w_plus = ranks[np.asarray(differences) > 0].sum()
    observed = min(w_plus, total - w_plus)
    signs = list(itertools.product((0, 1), repeat=len(ranks)))
    extreme = sum(min(s @ ranks, total - s @ ranks) <= observed for s in map(np.array, signs))
    return extreme / len(signs), observed


def test_wilcoxon_matches_exact_enumeration_on_a_small_case():
    b = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    a = b + np.array([1.0, -2.0, 3.0, 4.0, 5.0])
    p, statistic = exact_two_sided_p(list(a - b))
    assert p == pytest.approx(6 / 32) and statistic == 2  # W- = 2; P(W+ <= 2) = 3/32, doubled
    result = wilcoxon_paired(a, b)
    assert result["p"] == pytest.approx(p) and result["statistic"] == statistic
    assert result["n"] == 5 and result["median_difference"] == 3.0
    assert result["median_a"] == 13.0 and result["median_b"] == 10.0 and result["note"] is None


def test_wilcoxon_models_matches_scipy_and_corrects_over_the_metrics():
    rng = np.random.default_rng(3)
    cases = [f"c{i}" for i in range(30)]
    a = {c: {"MSE": rng.normal(1.0, 0.3), "SSIM": rng.normal(0.8, 0.05)} for c in cases}
    b = {c: {"MSE": a[c]["MSE"] + rng.normal(0.15, 0.2), "SSIM": a[c]["SSIM"] + rng.normal(0, 0.05)} for c in cases}
    rows = rows_of("A", a) + rows_of("B", b)
    results = wilcoxon_models(rows, "A", "B", ["MSE", "SSIM"])
    ps = []
    for entry in results:
        x = np.array([a[c][entry["metric"]] for c in cases])
        y = np.array([b[c][entry["metric"]] for c in cases])
        expected = stats.wilcoxon(x, y, alternative="two-sided")
        assert entry["n"] == 30
        assert entry["statistic"] == pytest.approx(expected.statistic) and entry["p"] == pytest.approx(expected.pvalue)
        assert entry["median_difference"] == pytest.approx(np.median(x - y))
        ps.append(expected.pvalue)
    np.testing.assert_allclose([e["p_bh"] for e in results], stats.false_discovery_control(ps))
    assert results[0]["p"] < 0.01  # B's MSE is larger by construction: the test must see it


def test_wilcoxon_models_gives_no_p_without_enough_pairs_or_differences():
    rows = (rows_of("A", {"c1": {"MSE": 1.0, "SSIM": 0.5, "VIF": 0.1}, "c2": {"MSE": 2.0, "SSIM": 0.6, "VIF": None}})
            + rows_of("B", {"c1": {"MSE": 1.0, "SSIM": 0.4, "VIF": 0.2}, "c2": {"MSE": 2.0, "SSIM": 0.3, "VIF": 0.3}}))
    mse, ssim, vif = wilcoxon_models(rows, "A", "B", ["MSE", "SSIM", "VIF"])
    assert mse["p"] is None and mse["p_bh"] is None and "differences are 0" in mse["note"]
    assert vif["p"] is None and vif["n"] == 1 and "at least 2" in vif["note"]
    assert ssim["p"] == pytest.approx(0.5)  # n = 2, both differences positive: exact p = 2 * 1/4
    assert ssim["p_bh"] == pytest.approx(0.5)  # the only test of the call


# --- Benjamini-Hochberg --------------------------------------------------------------------

def test_benjamini_hochberg_hand_computed():
    # sorted 0.01, 0.03, 0.04 -> 0.01*3/1, 0.03*3/2, 0.04*3/3 = 0.03, 0.045, 0.04 -> monotone 0.03, 0.04, 0.04
    assert benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
    assert benjamini_hochberg([0.5, 0.01, 0.02, 0.03]) == pytest.approx([0.5, 0.04, 0.04, 0.04])


def test_benjamini_hochberg_passes_none_through_without_counting_it():
    out = benjamini_hochberg([None, 0.01, 0.04, None, 0.03])
    assert out[0] is None and out[3] is None
    assert out[1:3] + out[4:] == pytest.approx([0.03, 0.04, 0.04])
    assert benjamini_hochberg([]) == [] and benjamini_hochberg([None]) == [None]


# --- Kruskal-Wallis and the density table --------------------------------------------------

def test_kruskal_hand_computed_h():
    # ranks: group a {1, 2} -> R = 3; group b {3, 4, 5} -> R = 12; N = 5
    # H = 12 / (5 * 6) * (3^2 / 2 + 12^2 / 3) - 3 * 6 = 0.4 * 52.5 - 18 = 3.0; p = chi2_1 tail = erfc(sqrt(H / 2))
    rows = rows_of("M", {"1": {"MSE": 0.1, "density": "a"}, "2": {"MSE": 0.2, "density": "a"},
                         "3": {"MSE": 0.3, "density": "b"}, "4": {"MSE": 0.4, "density": "b"},
                         "5": {"MSE": 0.5, "density": "b"}, "6": {"MSE": 9.0, "density": ""},
                         "7": {"MSE": None, "density": "c"}})
    result = kruskal_by_group(rows, "M", "MSE")
    assert result["groups"] == {"a": 2, "b": 3}
    assert result["statistic"] == pytest.approx(3.0)
    assert result["p"] == pytest.approx(math.erfc(math.sqrt(1.5)))


def test_kruskal_without_two_groups_or_with_equal_values_gives_no_p():
    one = rows_of("M", {"1": {"MSE": 0.1, "density": "a"}, "2": {"MSE": 0.2, "density": "a"}})
    result = kruskal_by_group(one, "M", "MSE")
    assert result["p"] is None and result["groups"] == {"a": 2} and "at least 2" in result["note"]
    equal = rows_of("M", {"1": {"MSE": 0.1, "density": "a"}, "2": {"MSE": 0.1, "density": "b"}})
    assert kruskal_by_group(equal, "M", "MSE")["p"] is None


def per_image_csv_rows(rows: list[dict]) -> list[dict]:
    """The rows as report.py reads them back from per_image.csv: every value text."""
    return list(csv.DictReader(io.StringIO(csv_text(rows))))


def density_rows() -> list[dict]:
    rng = np.random.default_rng(0)
    densities = ["d", "a", "b", "c", "", "unknown"] * 5
    rows = [{"model": "M", "case_id": f"c{i}", "density": d, "SSIM": rng.uniform(0.6, 0.9),
             "PSNR": rng.uniform(20, 30), "lesion_MAE": (rng.uniform(0, 0.1) if i % 2 else None)}
            for i, d in enumerate(densities)]
    rows[1]["PSNR"] = math.inf
    return rows + [dict(r, model="other", SSIM=0.0) for r in rows]


def test_density_table_per_group_and_kruskal_as_scipy():
    rows = density_rows()
    table = density_table(per_image_csv_rows(rows), "M", ["SSIM", "PSNR", "lesion_MAE"])
    assert [e["density"] for e in table] == ["a", "b", "c", "d", "unknown", KRUSKAL_ROW]
    for entry in table[:-1]:
        mine = [r for r in rows if r["model"] == "M" and r["density"] == entry["density"]]
        assert entry["n"] == len(mine) == 5
        for metric in ("SSIM", "PSNR", "lesion_MAE"):
            values = [r[metric] for r in mine if r[metric] is not None and math.isfinite(r[metric])]
            assert entry[f"{metric}_n"] == len(values)
            if values:
                assert entry[f"{metric}_mean"] == pytest.approx(np.mean(values))
                assert entry[f"{metric}_sd"] == pytest.approx(np.std(values, ddof=1))
            else:
                assert entry[f"{metric}_mean"] is None and entry[f"{metric}_sd"] is None
    assert table[0]["PSNR_n"] == 4  # the infinite PSNR is left out
    assert table[3]["lesion_MAE_n"] == 0 and table[0]["lesion_MAE_n"] == 5  # every d image lacks a mask
    test = table[-1]
    for metric in ("SSIM", "PSNR", "lesion_MAE"):
        groups = [[r[metric] for r in rows if r["model"] == "M" and r["density"] == g
                   and r[metric] is not None and math.isfinite(r[metric])] for g in ("a", "b", "c", "d", "unknown")]
        expected = stats.kruskal(*[g for g in groups if g])  # a group without values is left out
        assert test[f"{metric}_p"] == pytest.approx(expected.pvalue)
        assert test[f"{metric}_statistic"] == pytest.approx(expected.statistic)


# --- Pearson -------------------------------------------------------------------------------

def test_pearson_hand_computed():
    # x - mean = (-1, 0, 1), y - mean = (-7/3, -1/3, 8/3): r = 5 / sqrt(2 * 114/9)
    result = pearson([1, 2, 3, None, 4], [2, 4, 7, 1, "inf"])
    assert result["n"] == 3
    assert result["r"] == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    # n = 3: t = r sqrt(1 / (1 - r^2)) with 1 df, p = 1 - 2 atan(|t|) / pi
    r = result["r"]
    assert result["p"] == pytest.approx(1 - 2 * math.atan(abs(r) / math.sqrt(1 - r * r)) / math.pi)


def test_pearson_matches_scipy_and_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    result = pearson(list(x), [str(v) for v in y])
    expected = stats.pearsonr(x, y)
    assert result["r"] == pytest.approx(np.corrcoef(x, y)[0, 1]) and result["p"] == pytest.approx(expected.pvalue)


def test_pearson_undefined_for_few_pairs_or_a_constant_series():
    few = pearson([1, 2, None], [1, 2, 3])
    assert few["r"] is None and few["p"] is None and few["n"] == 2 and "at least 3" in few["note"]
    constant = pearson([1, 2, 3, 4], [5, 5, 5, 5])
    assert constant["r"] is None and "constant" in constant["note"]
    with pytest.raises(ValueError, match="different lengths"):
        pearson([1, 2], [1])


# --- cross-validation folds ----------------------------------------------------------------

def test_fold_table_is_the_mean_and_sd_of_fold_means():
    folds = {
        "0": rows_of("M", {"c1": {"MSE": 1.0, "PSNR": "inf"}, "c2": {"MSE": 3.0, "PSNR": "20"}})
        + rows_of("base", {"c1": {"MSE": 5.0, "PSNR": "10"}, "c2": {"MSE": 5.0, "PSNR": "12"}}),
        "1": rows_of("M", {"c3": {"MSE": 4.0, "PSNR": "30"}}),
        "2": rows_of("M", {"c4": {"MSE": "", "PSNR": "25"}, "c5": {"MSE": 6.0, "PSNR": "35"}, "c6": {"MSE": 8.0}}),
    }
    model, base = fold_table(folds, ["MSE", "PSNR"])
    # fold means of M: MSE 2, 4, 7; PSNR 20 (inf left out), 30, 30
    assert model["model"] == "M" and model["n_folds"] == 3 and model["n_images"] == 6
    assert model["MSE_mean"] == pytest.approx(13 / 3) and model["MSE_sd"] == pytest.approx(np.std([2, 4, 7], ddof=1))
    assert model["PSNR_mean"] == pytest.approx(80 / 3) and model["PSNR_n"] == 3
    assert base["n_folds"] == 1 and base["MSE_mean"] == 5.0 and base["MSE_sd"] is None and base["PSNR_mean"] == 11.0


def test_across_folds_of_fold_means_as_compare_reads_them():
    """compare's table: one row per fold and model with that fold's means (its summary.csv), a fold
    without a value (no lesion mask in the test fold) left out of that metric's n."""
    rows = [{"model": "M", "fold": 0, "n_images": 3, "MSE": 2.0, "lesion_MAE": None},
            {"model": "base", "fold": 0, "n_images": 3, "MSE": 5.0, "lesion_MAE": None},
            {"model": "M", "fold": 1, "n_images": 2, "MSE": 4.0, "lesion_MAE": 0.5}]
    model, base = across_folds(rows, ["MSE", "lesion_MAE"])
    assert (model["model"], model["n_folds"], model["n_images"]) == ("M", 2, 5)
    assert model["MSE_mean"] == 3.0 and model["MSE_sd"] == pytest.approx(np.std([2, 4], ddof=1))
    assert (model["lesion_MAE_mean"], model["lesion_MAE_sd"], model["lesion_MAE_n"]) == (0.5, None, 1)
    assert (base["n_folds"], base["MSE_mean"], base["lesion_MAE_n"]) == (1, 5.0, 0)
