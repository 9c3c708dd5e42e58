"""reader_study.py's visual Turing test (truth per image), McNemar's test and inter-reader agreement, on
ratings files written here whose values are counted by hand or computed by scipy/sklearn, and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, recall_score

from hostile import expect_clear_error, run_cli, snapshot
from test_reader_study import write_ratings
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.reader_study import (ALL_READERS, BOTH_IMAGES, EXACT_BELOW, TURING_ENDPOINT,
                                                             _fleiss_kappa, format_reader_table, mcnemar, reader_study)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "ratings-turing.csv"
HEADER = ("reader", "image", "truth", "answer", "case_id")
# Answers per reader for cases p1..p6, (real image, synthetic image): "r" real, "s" synthetic.
ANSWERS = {
    "R1": ["rr", "rs", "sr", "rr", "rs", "rr"],   # real: 5/6 called real; synthetic: 2/6 called synthetic
    "R2": ["rr", "rr", "rr", "rs", "rr", "rr"],   # fooled by 5 of 6 synthetic images
    "R3": ["rs", "rs", "rs", "ss", "rr", "rr"],   # sees through 4 of 6, calls one real image synthetic
}
WORD = {"r": "real", "s": "synthetic"}


def write(path: Path, lines: list[list[str]], header=HEADER) -> Path:
    """A ratings file of the Turing layout by default (test_reader_study's writer)."""
    return write_ratings(path, lines, header)


def turing_lines(answers=ANSWERS) -> list[list[str]]:
    lines = []
    for reader, pairs in answers.items():
        for i, (on_real, on_synthetic) in enumerate(pairs, 1):
            lines.append([reader, f"p{i}_real.png", "real", WORD[on_real], f"p{i}"])
            lines.append([reader, f"p{i}_syn.png", "synthetic", WORD[on_synthetic], f"p{i}"])
    return lines


@pytest.fixture
def turing_file(tmp_path) -> Path:
    return write(tmp_path / "turing.csv", turing_lines())


def row(result, reader):
    found = [r for r in result.rows if r["reader"] == reader]
    assert len(found) == 1 and found[0]["image"] == BOTH_IMAGES and found[0]["endpoint"] == TURING_ENDPOINT
    return found[0]


def test_turing_measures_against_the_truth_of_each_image(turing_file):
    result = reader_study(turing_file, n_resamples=200)
    assert [(e.name, e.kind, e.per_image) for e in result.endpoints] == [(TURING_ENDPOINT, "binary", True)]
    assert result.tests == []   # no Wilcoxon: the paired test of this endpoint is McNemar's
    truth = [0, 1] * 6   # 1: synthetic, the positive class
    pooled_truth, pooled_answer = [], []
    for reader, pairs in ANSWERS.items():
        answer = [int(a == "s") for pair in pairs for a in pair]
        r = row(result, reader)
        assert (r["n"], r["n_cases"]) == (12, 6)
        assert r["accuracy"] == pytest.approx(np.mean(np.array(answer) == truth))
        assert r["sensitivity"] == pytest.approx(recall_score(truth, answer, pos_label=1))   # synthetic found
        assert r["specificity"] == pytest.approx(recall_score(truth, answer, pos_label=0))   # real called real
        pooled_truth += truth
        pooled_answer += answer
    r1 = row(result, "R1")
    assert (r1["true_positive"], r1["n_positive"], r1["true_negative"], r1["n_negative"]) == (2, 6, 5, 6)
    pooled = row(result, ALL_READERS)
    assert (pooled["n"], pooled["n_cases"]) == (36, 6)
    assert pooled["sensitivity"] == pytest.approx(recall_score(pooled_truth, pooled_answer, pos_label=1))
    assert pooled["sensitivity"] == pytest.approx(7 / 18) and pooled["specificity"] == pytest.approx(16 / 18)


def test_without_case_ids_each_image_is_its_own_case_and_the_interval_is_scipys(tmp_path):
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 40)
    answer = np.where(rng.random(40) < 0.7, truth, 1 - truth)
    lines = [["R1", f"img{i}", WORD["rs"[t]], WORD["rs"[a]]] for i, (t, a) in enumerate(zip(truth, answer))]
    r = row(reader_study(write(tmp_path / "t.csv", lines, HEADER[:4]), n_resamples=300, seed=4), "R1")
    assert r["n_cases"] == 40
    expected = stats.bootstrap(((answer == truth).astype(float),), np.mean, n_resamples=300, method="percentile",
                               rng=np.random.default_rng(4)).confidence_interval
    assert (r["accuracy_lo"], r["accuracy_hi"]) == pytest.approx((expected.low, expected.high))


def test_intervals_are_clustered_by_case(tmp_path):
    # A reader right on both images of 12 cases and wrong on both of 8: linked by case the 40 reads hold
    # 20 independent units, not 40, and the case-level interval is wider than the image-level one.
    answers = {"R1": ["rs"] * 12 + ["sr"] * 8}
    linked = turing_lines(answers)
    unlinked = [line[:4] + [line[1]] for line in linked]
    widths = []
    for name, lines in (("linked", linked), ("unlinked", unlinked)):
        r = row(reader_study(write(tmp_path / f"{name}.csv", lines), n_resamples=2000, seed=1), "R1")
        assert r["accuracy"] == pytest.approx(0.6)
        widths.append(r["accuracy_hi"] - r["accuracy_lo"])
    assert widths[0] > 1.25 * widths[1]


def test_mcnemar_per_reader_is_the_exact_binomial_test(turing_file):
    result = reader_study(turing_file, n_resamples=20)
    tests = {t["reader"]: t for t in result.mcnemar}
    assert list(tests) == ["R1", "R2", "R3", ALL_READERS]
    # "synthetic" said of the real image only (b) / of the synthetic image only (c), counted from ANSWERS
    for reader, (b, c) in {"R1": (1, 2), "R2": (0, 1), "R3": (0, 3)}.items():
        t = tests[reader]
        assert (t["n_pairs"], t["clinical_only"], t["synthetic_only"]) == (6, b, c)
        assert t["method"] == "exact binomial"
        assert t["p"] == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    pooled = tests[ALL_READERS]
    assert (pooled["n_pairs"], pooled["n_cases"], pooled["clinical_only"], pooled["synthetic_only"]) == (18, 6, 1, 6)
    assert pooled["method"] == "exact sign-flip, clustered by case"
    # per case b_k - c_k: p1 -1, p2 -2, p3 +1-1 = 0, p4 -1, p5 -1, p6 0: sum -5 over magnitudes (1, 2, 1, 1)
    flips = np.array(np.meshgrid(*[[-m, m] for m in (1, 2, 1, 1)])).reshape(4, -1).sum(0)
    assert pooled["statistic"] == -5 and pooled["p"] == pytest.approx(np.mean(np.abs(flips) >= 5))


def test_mcnemar_methods_against_reference_values():
    # Agresti, Categorical Data Analysis: 150 vs 86 discordant pairs, continuity-corrected chi-square 16.82
    t = mcnemar({f"c{i}": int(i < 150) for i in range(236)}, {f"c{i}": int(i >= 150) for i in range(236)},
                clustered=False)
    assert t["method"] == "chi-square, continuity-corrected" and t["statistic"] == pytest.approx(63 ** 2 / 236)
    assert t["statistic"] == pytest.approx(16.82, abs=0.005)
    assert t["p"] == pytest.approx(stats.chi2.sf(63 ** 2 / 236, 1))
    # exact below EXACT_BELOW discordant pairs; clustered with one pair per case it is the same binomial test
    b, c = {f"c{i}": 1 for i in range(3)}, {f"d{i}": 1 for i in range(EXACT_BELOW - 4)}
    expected = stats.binomtest(3, EXACT_BELOW - 1, 0.5).pvalue
    assert mcnemar(b, c, clustered=False)["p"] == pytest.approx(expected)
    assert mcnemar(b, c, clustered=True)["p"] == pytest.approx(expected)
    # Durkalski's clustered chi-square from EXACT_BELOW discordant cases: with one pair per case it is
    # McNemar's chi-square without correction, (b - c)^2 / (b + c)
    b, c = {f"c{i}": 1 for i in range(20)}, {f"d{i}": 1 for i in range(10)}
    t = mcnemar(b, c, clustered=True)
    assert t["method"] == "Durkalski chi-square, clustered by case" and t["statistic"] == pytest.approx(100 / 30)
    # a case with two discordant pairs in one direction weighs 2 in the numerator and 4 in the denominator
    b["c0"] = 2
    assert mcnemar(b, c, clustered=True)["statistic"] == pytest.approx(11 ** 2 / (4 + 19 + 10))
    assert mcnemar({"c1": 0}, {}, clustered=False)["note"] == "no test: no discordant pairs"


def test_mcnemar_of_000s_lesion_endpoint_pairs_clinical_and_synthetic_reads(tmp_path):
    truth = ["yes", "yes", "yes", "no", "no", "no"]
    reads = {("R1", "clinical"): "yyynnn", ("R1", "synthetic"): "ynynyn",
             ("R2", "clinical"): "yynnnn", ("R2", "synthetic"): "nnnnnn"}
    lines = [[f"c{i}", reader, "lesion", image, {"y": "yes", "n": "no"}[x], truth[i]]
             for (reader, image), seen in reads.items() for i, x in enumerate(seen)]
    result = reader_study(write(tmp_path / "r.csv", lines, ("case_id", "reader", "endpoint", "image", "rating",
                                                             "truth")), n_resamples=20)
    tests = {t["reader"]: t for t in result.mcnemar}
    assert (tests["R1"]["clinical_only"], tests["R1"]["synthetic_only"], tests["R1"]["p"]) == (1, 1, 1.0)
    assert (tests["R2"]["clinical_only"], tests["R2"]["synthetic_only"]) == (2, 0)     # seen on clinical only
    assert tests["R2"]["p"] == pytest.approx(0.5)
    assert tests[ALL_READERS]["method"] == "exact sign-flip, clustered by case"
    assert len(result.tests) == 3   # 000's Wilcoxon tests stay


def test_cohens_kappa_of_two_readers_is_sklearns(tmp_path):
    two = {k: ANSWERS[k] for k in ("R1", "R3")}
    result = reader_study(write(tmp_path / "t.csv", turing_lines(two)), n_resamples=300)
    (a,) = result.agreement
    answers = [[int(x == "s") for pair in two[reader] for x in pair] for reader in two]
    assert (a["statistic"], a["readers"], a["n_images"], a["n_cases"]) == ("Cohen's κ", "R1 R3", 12, 6)
    assert a["kappa"] == pytest.approx(cohen_kappa_score(*answers))
    assert a["kappa_lo"] <= a["kappa"] <= a["kappa_hi"]


def test_quadratic_cohen_kappa_between_readers_of_an_ordinal_endpoint(tmp_path):
    scores = {"R1": "abcdbcab", "R2": "abddcbab"}
    lines = [[f"c{i}", reader, "BPE", image, s, ""] for image in ("synthetic", "clinical")
             for reader, text in scores.items() for i, s in enumerate(text)]
    result = reader_study(write(tmp_path / "r.csv", lines, ("case_id", "reader", "endpoint", "image", "rating",
                                                             "truth")), n_resamples=50)
    value = {"a": 1, "b": 2, "c": 3, "d": 4}
    expected = cohen_kappa_score(*[[value[s] for s in scores[r]] for r in ("R1", "R2")], weights="quadratic")
    assert [(a["image"], a["statistic"]) for a in result.agreement] == [("clinical", "Cohen's κ (quadratic)"),
                                                                         ("synthetic", "Cohen's κ (quadratic)")]
    assert [a["kappa"] for a in result.agreement] == pytest.approx([expected, expected])


def test_fleiss_kappa_reference_value_and_three_readers(turing_file):
    # Fleiss (1971) as worked in Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters, 5 categories, kappa 0.210
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]], float)
    assert _fleiss_kappa(counts, np.ones(10)) == pytest.approx(0.2099, abs=5e-5)
    (a,) = reader_study(turing_file, n_resamples=300).agreement
    assert (a["statistic"], a["readers"], a["n_images"]) == ("Fleiss' κ", "R1 R2 R3", 12)
    # by hand: per image, how many of the 3 readers said "synthetic"
    said = np.array([[int(ANSWERS[r][i][j] == "s") for r in ANSWERS] for i in range(6) for j in range(2)]).sum(1)
    agree = ((said ** 2 + (3 - said) ** 2 - 3) / 6).mean()
    share = said.sum() / 36
    chance = share ** 2 + (1 - share) ** 2
    assert a["kappa"] == pytest.approx((agree - chance) / (1 - chance))
    assert a["kappa_lo"] <= a["kappa"] <= a["kappa_hi"]


def test_agreement_counts_only_images_every_reader_rated(tmp_path):
    lines = turing_lines({k: ANSWERS[k] for k in ("R1", "R2")})
    lines = [line for line in lines if not (line[0] == "R2" and line[1] == "p1_syn.png")]
    (a,) = reader_study(write(tmp_path / "t.csv", lines), n_resamples=20).agreement
    assert (a["n_images"], a["n_cases"]) == (11, 6)


def test_cli_writes_the_turing_tables(turing_file, tmp_path):
    out = tmp_path / "study"
    outcome = run_cli("reader-study", "--ratings", turing_file, "--out", out, "--resamples", "100")
    assert outcome.code == 0 and not outcome.escaped, outcome.describe()
    assert "| real or synthetic | all readers | real and synthetic | 36 |" in outcome.stdout
    assert sorted(p.name for p in out.iterdir()) == ["reader_study.csv", "reader_study.md",
                                                     "reader_study_agreement.csv", "reader_study_mcnemar.csv"]
    mcnemar_rows = list(csv.DictReader((out / "reader_study_mcnemar.csv").open()))
    assert [r["reader"] for r in mcnemar_rows] == ["R1", "R2", "R3", ALL_READERS]
    assert "Fleiss' κ" in (out / "reader_study.md").read_text(encoding="utf-8")


def test_the_documented_example_gives_the_documented_output():
    """docs/reader-study.md shows the tables of docs/examples/ratings-turing.csv: they must not drift."""
    doc = (REPO / "docs" / "reader-study.md").read_text(encoding="utf-8")
    table = format_reader_table(reader_study(EXAMPLE))   # the CLI's defaults: 1000 resamples, seed 0
    for line in table.splitlines():
        if line.startswith("| "):
            assert line in doc, line


@pytest.mark.parametrize("lines, header, message", [
    ([["R1", "a.png", "real", "real"]], ("reader", "image", "answer"),
     "missing column(s) truth: a real-or-synthetic ratings file has the columns reader, image, truth, answer"),
    ([["R1", "a.png", "real"]], ("reader", "image", "truth"), "or reader, image, truth, answer[, case_id] for 001's"),
    ([["R1", "a.png", "real", "real"], ["R1", "b.png", "synthetic", "maybe"]], HEADER[:4],
     "line 3, column 'answer': 'maybe' is neither 'real' (or 'clinical') nor 'synthetic'"),
    ([["R1", "a.png", "fake", "real"]], HEADER[:4], "line 2, column 'truth': 'fake' is neither"),
    ([["R1", "a.png", "real", "real"], ["R1", "a.png", "real", "synthetic"]], HEADER[:4],
     "line 3, column 'image': reader 'R1' rated image 'a.png' already on line 2"),
    ([["R1", "a.png", "real", "real"], ["R2", "a.png", "synthetic", "real"]], HEADER[:4],
     "line 3, column 'truth': image 'a.png' is real on line 2"),
    ([["R1", "a.png", "real", "real", "p1"], ["R2", "a.png", "real", "real", "p2"]], HEADER,
     "line 3, column 'case_id': image 'a.png' is in case 'p1' on line 2"),
    ([["R1", "a.png", "real", "real", "p1"], ["R1", "b.png", "real", "real", "p1"]], HEADER,
     "line 3, column 'image': case 'p1' has a second real image: 'a.png' on line 2 and 'b.png'"),
    ([["R1", "", "real", "real"]], HEADER[:4], "line 2, column 'image': empty"),
    ([[ALL_READERS, "a.png", "real", "real"]], HEADER[:4], "line 2, column 'reader': 'all readers' is the name"),
])
def test_bad_turing_files_give_one_line_naming_the_file(tmp_path, lines, header, message):
    path = write(tmp_path / "ratings.csv", lines, header)
    with pytest.raises(InputError) as info:
        reader_study(path, n_resamples=10)
    assert info.value.path == str(path) and message in info.value.problem


def test_cli_error_for_a_bad_answer_is_one_line(tmp_path):
    bad = write(tmp_path / "bad.csv", [["R1", "a.png", "real", "probably real"]], HEADER[:4])
    before = snapshot(tmp_path)
    outcome = run_cli("reader-study", "--ratings", bad, "--out", tmp_path / "o")
    expect_clear_error(outcome, names=bad, says="'probably real' is neither", before=before, watched=(tmp_path,))
