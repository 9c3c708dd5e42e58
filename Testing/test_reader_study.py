"""reader_study.py on hand-made ratings files whose measures are known exactly, and the CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, recall_score

from VirtualContrastTraining.cli import main
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS
from VirtualContrastTraining.events import EXIT_BAD_INPUT
from VirtualContrastTraining.evaluation.reader_study import ALL_READERS, format_reader_table, reader_study

RESAMPLES = 200
CASES = ["c1", "c2", "c3", "c4", "c5", "c6"]
LESION_TRUTH = ["yes", "yes", "yes", "no", "no", "no"]
# Lesion ratings per (reader, image), cases c1..c6.
LESION = {
    ("R1", "clinical"): ["yes", "yes", "yes", "no", "no", "no"],    # all right
    ("R1", "synthetic"): ["yes", "no", "yes", "no", "yes", "no"],   # c2 missed, c5 false positive
    ("R2", "real"): ["1", "1", "0", "0", "0", "0"],                 # c3 missed ("real" = clinical, 1/0 ratings)
    ("R2", "synthetic"): ["no"] * 6,                                # every lesion missed
}
# BPE scores (no truth: each reader's clinical score is the reference of the synthetic one).
BPE = {
    ("R1", "clinical"): list("abcdbc"), ("R1", "synthetic"): list("bbcccd"),   # c5: b -> c crosses the dichotomy
    ("R2", "clinical"): list("aabcdd"), ("R2", "synthetic"): list("abbddc"),   # never crosses it
}


def write_ratings(path: Path, lines: list[list[str]],
                  header=("case_id", "reader", "endpoint", "image", "rating", "truth")) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(lines)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def study_lines() -> list[list[str]]:
    lines = []
    for (reader, image), ratings in LESION.items():
        lines += [[c, reader, "lesion", image, r, t] for c, r, t in zip(CASES, ratings, LESION_TRUTH)]
    for (reader, image), ratings in BPE.items():
        lines += [[c, reader, "BPE", image, r, ""] for c, r in zip(CASES, ratings)]
    return lines


@pytest.fixture
def ratings_file(tmp_path) -> Path:
    return write_ratings(tmp_path / "ratings.csv", study_lines())


def row_of(result, endpoint, reader, image):
    found = [r for r in result.rows if (r["endpoint"], r["reader"], r["image"]) == (endpoint, reader, image)]
    assert len(found) == 1, (endpoint, reader, image)
    return found[0]


def test_binary_endpoint_measures_are_known_exactly(ratings_file):
    result = reader_study(ratings_file, n_resamples=RESAMPLES)
    assert [(e.name, e.kind, e.reference) for e in result.endpoints] == [("lesion", "binary", "truth"),
                                                                        ("BPE", "ordinal", "clinical")]
    expected = {  # (n correct, n, sensitivity, specificity) counted by hand from LESION
        ("R1", "clinical"): (6, 6, 3 / 3, 3 / 3), ("R1", "synthetic"): (4, 6, 2 / 3, 2 / 3),
        ("R2", "clinical"): (5, 6, 2 / 3, 3 / 3), ("R2", "synthetic"): (3, 6, 0 / 3, 3 / 3),
        (ALL_READERS, "clinical"): (11, 12, 5 / 6, 6 / 6), (ALL_READERS, "synthetic"): (7, 12, 2 / 6, 5 / 6),
    }
    for (reader, image), (correct, n, sensitivity, specificity) in expected.items():
        row = row_of(result, "lesion", reader, image)
        assert (row["n_correct"], row["n"]) == (correct, n)
        assert row["accuracy"] == pytest.approx(correct / n)
        assert row["sensitivity"] == pytest.approx(sensitivity) and row["specificity"] == pytest.approx(specificity)
        assert row["kappa"] is None
    # sklearn's recall of each class is sensitivity and specificity
    truth = [1, 1, 1, 0, 0, 0]
    synthetic = [1, 0, 1, 0, 1, 0]
    row = row_of(result, "lesion", "R1", "synthetic")
    assert row["sensitivity"] == pytest.approx(recall_score(truth, synthetic, pos_label=1))
    assert row["specificity"] == pytest.approx(recall_score(truth, synthetic, pos_label=0))
    assert (row["true_positive"], row["n_positive"], row["true_negative"], row["n_negative"]) == (2, 3, 2, 3)


def quadratic_kappa_by_hand(a: list[int], b: list[int]) -> float:
    """1 - sum(w O) / sum(w E), w = (i - j)^2 over the four categories, E from the marginals."""
    observed = np.zeros((4, 4))
    for x, y in zip(a, b):
        observed[x - 1, y - 1] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    w = np.subtract.outer(np.arange(4), np.arange(4)) ** 2
    return 1 - (w * observed).sum() / (w * expected).sum()


def test_ordinal_endpoint_dichotomy_accuracy_and_kappa(ratings_file):
    result = reader_study(ratings_file, n_resamples=RESAMPLES)
    score = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert not [r for r in result.rows if r["endpoint"] == "BPE" and r["image"] == "clinical"]  # it is the reference
    for reader, correct in (("R1", 5), ("R2", 6)):
        row = row_of(result, "BPE", reader, "synthetic")
        clinical = [score[x] for x in BPE[(reader, "clinical")]]
        synthetic = [score[x] for x in BPE[(reader, "synthetic")]]
        assert row["n_correct"] == correct and row["accuracy"] == pytest.approx(correct / 6)
        assert row["kappa"] == pytest.approx(cohen_kappa_score(clinical, synthetic, weights="quadratic"))
        assert row["kappa"] == pytest.approx(quadratic_kappa_by_hand(clinical, synthetic))
        assert row["sensitivity"] is None and row["specificity"] is None
    pooled = row_of(result, "BPE", ALL_READERS, "synthetic")
    clinical = [score[x] for r in ("R1", "R2") for x in BPE[(r, "clinical")]]
    synthetic = [score[x] for r in ("R1", "R2") for x in BPE[(r, "synthetic")]]
    assert pooled["accuracy"] == pytest.approx(11 / 12)
    assert pooled["kappa"] == pytest.approx(cohen_kappa_score(clinical, synthetic, weights="quadratic"))


def test_kappa_keeps_ordinal_distances_when_a_middle_score_is_unused(tmp_path):
    # scores a, b, d only: sklearn without labels would put d next to b; here d is two steps from b
    clinical, synthetic = list("abdabd"), list("abdbbd")
    lines = [[f"c{i}", "R1", "BPE", image, s, ""]
             for image, scores in (("clinical", clinical), ("synthetic", synthetic)) for i, s in enumerate(scores)]
    row = row_of(reader_study(write_ratings(tmp_path / "r.csv", lines), n_resamples=20), "BPE", "R1", "synthetic")
    score = {"a": 1, "b": 2, "d": 4}
    assert row["kappa"] == pytest.approx(quadratic_kappa_by_hand([score[x] for x in clinical],
                                                                 [score[x] for x in synthetic]))


def test_confidence_intervals_contain_the_estimate_and_repeat_with_the_seed(ratings_file):
    first = reader_study(ratings_file, n_resamples=RESAMPLES, seed=7)
    assert first.rows == reader_study(ratings_file, n_resamples=RESAMPLES, seed=7).rows
    other = reader_study(ratings_file, n_resamples=RESAMPLES, seed=8)
    assert [r["accuracy_lo"] for r in other.rows] + [r["kappa_hi"] for r in other.rows] != \
        [r["accuracy_lo"] for r in first.rows] + [r["kappa_hi"] for r in first.rows]
    checked = 0
    for row in first.rows:
        for name in ("accuracy", "sensitivity", "specificity", "kappa"):
            if row[name] is not None:
                assert row[f"{name}_lo"] <= row[name] + 1e-12 and row[name] <= row[f"{name}_hi"] + 1e-12, (row, name)
                checked += 1
    assert checked == 6 * 3 + 3 * 2
    wide = row_of(first, "lesion", ALL_READERS, "synthetic")
    assert wide["accuracy_lo"] < wide["accuracy"] < wide["accuracy_hi"]


def test_interval_equals_scipy_bootstrap_with_one_rating_per_case(tmp_path):
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 40)
    rating = np.where(rng.random(40) < 0.8, truth, 1 - truth)
    lines = [[f"c{i}", "R1", "lesion", "synthetic", str(r), str(t)] for i, (r, t) in enumerate(zip(rating, truth))]
    row = row_of(reader_study(write_ratings(tmp_path / "r.csv", lines), n_resamples=300, seed=11),
                 "lesion", "R1", "synthetic")
    expected = stats.bootstrap(((rating == truth).astype(float),), np.mean, n_resamples=300, method="percentile",
                               rng=np.random.default_rng(11)).confidence_interval
    assert (row["accuracy_lo"], row["accuracy_hi"]) == pytest.approx((expected.low, expected.high))


def test_interval_is_degenerate_when_every_reader_is_always_right(tmp_path):
    lines = []
    for reader in ("R1", "R2"):
        for image in ("clinical", "synthetic"):
            lines += [[c, reader, "lesion", image, t, t] for c, t in zip(CASES, LESION_TRUTH)]
            lines += [[c, reader, "BPE", image, s, s] for c, s in zip(CASES, "abcdab")]
    result = reader_study(write_ratings(tmp_path / "r.csv", lines), n_resamples=RESAMPLES)
    assert result.endpoints[1].reference == "truth" and len(result.rows) == 12
    for row in result.rows:
        for name in ("accuracy", "sensitivity", "specificity", "kappa"):
            if row[name] is not None:
                assert row[name] == row[f"{name}_lo"] == row[f"{name}_hi"] == 1.0
    for test in result.tests:
        assert test["p"] is None and test["p_bh"] is None and "differences are 0" in test["note"]


def test_wilcoxon_clinical_vs_synthetic_with_bh_across_endpoints(ratings_file):
    result = reader_study(ratings_file, n_resamples=20)
    assert [(t["endpoint"], t["reader"]) for t in result.tests] == [
        ("lesion", "R1"), ("lesion", "R2"), ("lesion", ALL_READERS), ("BPE", "R1"), ("BPE", "R2"), ("BPE", ALL_READERS)]
    yes = {"yes": 1, "1": 1, "no": 0, "0": 0}
    correct = {key: [int(yes[r] == yes[t]) for r, t in zip(ratings, LESION_TRUTH)] for key, ratings in LESION.items()}
    lesion_r2 = next(t for t in result.tests if (t["endpoint"], t["reader"]) == ("lesion", "R2"))
    expected = stats.wilcoxon(correct[("R2", "real")], correct[("R2", "synthetic")])
    assert lesion_r2["compared"] == "correct (1/0)" and lesion_r2["n_pairs"] == 6
    assert lesion_r2["p"] == pytest.approx(expected.pvalue)
    assert lesion_r2["statistic"] == pytest.approx(expected.statistic)
    assert lesion_r2["clinical_mean"] == pytest.approx(5 / 6) and lesion_r2["synthetic_mean"] == pytest.approx(3 / 6)
    score = {"a": 1, "b": 2, "c": 3, "d": 4}
    bpe_all = next(t for t in result.tests if (t["endpoint"], t["reader"]) == ("BPE", ALL_READERS))
    clinical = [score[x] for r in ("R1", "R2") for x in BPE[(r, "clinical")]]
    synthetic = [score[x] for r in ("R1", "R2") for x in BPE[(r, "synthetic")]]
    assert bpe_all["compared"] == "rating (1-4)" and bpe_all["n_pairs"] == 12
    assert bpe_all["p"] == pytest.approx(stats.wilcoxon(clinical, synthetic).pvalue)
    for reader in ("R1", "R2", ALL_READERS):
        tests = [t for t in result.tests if t["reader"] == reader]
        ps = [t["p"] for t in tests]
        assert None not in ps
        assert [t["p_bh"] for t in tests] == pytest.approx(list(stats.false_discovery_control(ps)))


def test_a_case_rated_on_one_image_only_counts_without_a_pair(tmp_path):
    lines = study_lines() + [["c7", "R1", "lesion", "synthetic", "yes", "yes"],
                             ["c7", "R1", "BPE", "synthetic", "c", ""]]
    result = reader_study(write_ratings(tmp_path / "r.csv", lines), n_resamples=20)
    assert row_of(result, "lesion", "R1", "synthetic")["n"] == 7
    assert row_of(result, "lesion", "R1", "clinical")["n"] == 6
    assert next(t for t in result.tests if (t["endpoint"], t["reader"]) == ("lesion", "R1"))["n_pairs"] == 6
    assert row_of(result, "BPE", "R1", "synthetic")["n"] == 6  # c7's synthetic BPE has no clinical reference
    assert result.notes == ["BPE: 1 synthetic rating(s) without the same reader's clinical rating of the case "
                            "have no reference and were left out."]


def test_markdown_table(ratings_file):
    text = format_reader_table(reader_study(ratings_file, n_resamples=RESAMPLES))
    assert "- **lesion**: binary (accuracy, sensitivity, specificity), against the truth column" in text
    assert "- **BPE**: ordinal" in text and "each reader's own rating of the clinical image" in text
    assert "| lesion | all readers | synthetic | 12 | 58.3 % (7/12) [" in text
    assert "33.3 % (2/6)" in text  # pooled synthetic sensitivity
    assert "| BPE | R1 | synthetic | 6 | 83.3 % (5/6) [" in text


# --- CLI and bad input ---------------------------------------------------------------------

def test_cli_writes_the_report_files(ratings_file, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["reader-study", "--ratings", str(ratings_file), "--out", str(out), "--resamples", "50",
                 "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "| lesion | R1 | clinical | 6 | 100.0 % (6/6) [100.0, 100.0]" in printed
    markdown = (out / "reader_study.md").read_text()
    assert NOT_FOR_DIAGNOSIS in markdown and "50 resamples of cases, seed 3" in markdown
    rows = list(csv.DictReader((out / "reader_study.csv").open()))
    assert len(rows) == 9 and rows[0]["endpoint"] == "lesion" and float(rows[0]["accuracy"]) == 1.0
    tests = list(csv.DictReader((out / "reader_study_wilcoxon.csv").open()))
    assert len(tests) == 6 and {"p", "p_bh", "n_pairs"} <= set(tests[0])


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = write_ratings(tmp_path / "bad.csv", [["c1", "R1", "lesion", "fake", "yes", "yes"]])
    assert main(["reader-study", "--ratings", str(bad), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "line 2, column 'image'" in err


@pytest.mark.parametrize("lines, header, message", [
    ([["c1", "R1", "lesion", "clinical", "yes"]], ("case_id", "reader", "endpoint", "image", "rating"),
     "missing column(s) truth"),
    ([["c1", "R1", "lesion", "clinical", "yes", "yes"], ["c2", "R1", "lesion", "ai", "no", "no"]], None,
     "line 3, column 'image': 'ai' is neither"),
    ([["c1", "R1", "lesion", "clinical", "yes", "yes"], ["c2", "R1", "lesion", "clinical", "maybe", "no"]], None,
     "line 3, column 'rating': 'maybe' is not a rating of the binary endpoint 'lesion'"),
    ([["c1", "R1", "BPE", "clinical", "a", ""], ["c2", "R1", "BPE", "clinical", "b", ""]], None,
     "line 2, column 'rating': 'a' is not a rating of the binary endpoint 'BPE'"),  # two values only: binary
    ([["c1", "R1", "lesion", "clinical", "yes", "yes"], ["c2", "R1", "lesion", "clinical", "no", ""]], None,
     "line 3, column 'truth': empty, but endpoint 'lesion' is binary"),
    ([["c1", "R1", "BPE", "clinical", "a", "a"], ["c2", "R1", "BPE", "clinical", "b", ""],
      ["c3", "R1", "BPE", "clinical", "c", "c"]], None, "line 3, column 'truth': empty, but endpoint 'BPE' is ordinal"),
    ([["c1", "R1", "lesion", "clinical", "yes", "yes"], ["c1", "R2", "lesion", "clinical", "yes", "no"]], None,
     "line 3, column 'truth': case 'c1' has another truth on line 2"),
    ([["c1", "R1", "lesion", "clinical", "yes", "yes"], ["c1", "R1", "lesion", "real", "no", "yes"]], None,
     "line 3, column 'rating': reader 'R1' rated the clinical image of case 'c1' for 'lesion' already on line 2"),
    ([["c1", "", "lesion", "clinical", "yes", "yes"]], None, "line 2, column 'reader': empty"),
    ([["c1", "R1", "lesion", "clinical", "yes", "perhaps"]], None, "line 2, column 'truth': 'perhaps' is not a value"),
    ([], None, "the ratings file has no ratings"),
])
def test_malformed_ratings_give_an_input_error_naming_the_file(tmp_path, lines, header, message):
    path = write_ratings(tmp_path / "ratings.csv", lines, *([header] if header else []))
    with pytest.raises(InputError) as info:
        reader_study(path, n_resamples=10)
    assert info.value.path == str(path)
    assert message in info.value.problem


def test_missing_file_and_bad_resamples(tmp_path, ratings_file):
    with pytest.raises(InputError, match="ratings file not found") as info:
        reader_study(tmp_path / "absent.csv")
    assert info.value.path == str(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="at least 1"):
        reader_study(ratings_file, n_resamples=0)
