"""`virtual-contrast reader-study`: the statistics of a reader study of clinical and synthetic DES images.

    virtual-contrast reader-study --ratings ratings.csv --out study/

Two layouts of ratings CSV, told apart by the header (docs/reader-study.md):

- Rofena et al. 2024 (001)'s visual Turing test, the truth per image: reader, image, truth, answer
  (real or synthetic) and optionally case_id linking a real image to its
  synthetic one. Accuracy, and sensitivity/specificity with "synthetic" as
  positive (001's true negative/true positive rates), per reader and pooled.
- Zormpas-Petridis et al. 2026 (000)'s reading, the truth per case: case_id, reader, endpoint, image
  (clinical or synthetic), rating, truth. An endpoint is ordinal when its
  ratings are a-d or 1-4 with more than two distinct values (BPE): its truth
  may be empty on every line, and each reader's clinical rating is then the
  reference for the synthetic one; any other endpoint is binary (yes/no, 1/0,
  true/false, positive/negative) and needs the truth (e.g. biopsy). Accuracy,
  sensitivity, specificity or quadratic-weighted kappa per endpoint, reader
  and image, and Wilcoxon tests of clinical against synthetic corrected by
  Benjamini-Hochberg (Zormpas-Petridis et al. 2026).

Both: 95 % bootstrap CIs over cases (all ratings of a case resampled
together), McNemar's test of each reader's paired clinical/synthetic reads
(exact binomial while discordant pairs are few; pooled readers clustered by case),
and inter-reader Cohen's (two readers) or Fleiss' kappa. Writes
OUT/reader_study.md, OUT/reader_study.csv and, where the study has them,
OUT/reader_study_wilcoxon.csv, _mcnemar.csv and _agreement.csv, and prints
the tables.
"""

from __future__ import annotations

import argparse

from VirtualContrastTraining.evaluation.reader_study import reader_study, write_reader_study
from VirtualContrastTraining.events import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reader-study",
                       help="reader-study statistics: accuracy, sensitivity, specificity, kappa, McNemar, "
                            "Wilcoxon; Rofena et al. 2024 (001)'s real-or-synthetic test",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    required = p.add_argument_group("required")
    required.add_argument("--ratings", required=True, metavar="CSV",
                          help="ratings, one per line, in either layout (see above)")
    required.add_argument("--out", required=True, metavar="DIR", help="folder for reader_study.md and the CSVs")
    p.add_argument("--resamples", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of cases for the 95%% CIs (default 1000, as Zormpas-Petridis et al. "
                        "2026 (000))")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = reader_study(args.ratings, n_resamples=args.resamples, seed=args.seed)
    paths = write_reader_study(result, args.out)
    print(f"{result.table}\n\nreport: {paths[0]}")
    return EXIT_OK
