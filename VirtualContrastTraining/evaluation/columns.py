"""Every per-image value of an evaluation, once: the one registry that the CSVs, summaries, report, compare
and the Slicer module's metrics table read.

Each Column is one column of per_image.csv (and its `<key>_mean`, `<key>_sd`,
`<key>_n` in summary.csv): its title in tables, the number format of its
mean ± sd, the paper it comes from, which direction is better, and its group,
which places it in the report:

- "image": pixel similarity of the synthetic DES to the real DES (metrics.py):
  the report's "Image similarity" tables, its paired tests and box plots;
- "setting": 003's three settings (analyses.setting_metrics);
- "change": 000's change from the LE (analyses.change_metrics);
- "tissue": 000's tissue CNR and region means (analyses.tissue_metrics).

The built-in columns are computed per group by those functions. A new value is
one entry here with a `compute` function of the image set (ImageSet): it then
reaches per_image.csv, summary.csv, the evaluation folder's reader, the report
(an "image" column joins the headline table and the paired tests) and the Slicer
table without an edit elsewhere (Testing/test_columns.py checks it).

Each "image" value is measured in one of two REGIONS, named in its title:
"breast" (the Otsu/LE breast: padding and air excluded; `breast_` keys, and
the lesion and bright-pixel MAEs, which lie inside it) and "square" (the whole
padded square, as 001-004 compute it: the value to compare with the papers).
Padding and air are easy to predict, so the square's values are higher; the
breast's say how well the tissue is synthesized, and tables show them first.

Readers ask `keys()` and `column()` when they run, never copy the list at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from VirtualContrastTraining.evaluation.metrics import BRIGHT_PERCENTILE

P000, P001, P002, P003 = ("000 Zormpas-Petridis 2026", "001 Rofena 2024", "002 Rofena 2025",
                          "003 Hosseinipour 2024")
GROUPS = ("image", "setting", "change", "tissue")
# Where an "image" value is measured, in the order tables show them, and how they name each region.
REGIONS = {"breast": "breast (padding and air excluded)", "square": "whole padded square (as 001-004)"}
# 000's Table 2 measures tissue in these images, in this order.
TISSUE_IMAGES = ("LE", "DES", "synthetic")
_IMAGE_TITLES = {"LE": "LE", "DES": "real DES", "synthetic": "synthetic DES"}


@dataclass(frozen=True)
class ImageSet:
    """What a column's `compute` gets for one image and one model: 2-D arrays in [0, 1] on one grid, masks
    as bool arrays (lesion None when the image has none; the breast is Otsu on the LE; the tissue regions
    drawn or automatic)."""
    le: Any
    des: Any
    synthetic: Any
    lesion: Any
    breast: Any
    fibroglandular: Any
    adipose: Any


@dataclass(frozen=True)
class Column:
    key: str                    # per_image.csv column; summary.csv has <key>_mean, <key>_sd, <key>_n
    title: str                  # in the report's and compare's tables (and the Slicer table unless `measure`)
    fmt: str                    # number format of a mean ± sd cell
    paper: str                  # where it comes from, as the Slicer table shows it
    better: str | None          # "lower", "higher", or None where neither is better (CNR, region means)
    group: str                  # one of GROUPS
    measure: str | None = None  # the Slicer table's longer wording, when it differs from `title`
    compute: Callable[[ImageSet], float | None] | None = None  # None: computed by the group's function
    region: str = "square"      # of an "image" value: one of REGIONS

    @property
    def label(self) -> str:
        """The Slicer table's "measure" cell."""
        return self.measure or self.title


# The pixel similarity of 001-004, each in both REGIONS: (key, title, format, paper, better, Slicer wording).
_SIMILARITY = (("MSE", "MSE", ".5f", f"{P001}, eq. 9", "lower", None),
               ("PSNR", "PSNR (dB)", ".2f", f"{P001}, eq. 10", "higher", None),
               ("SSIM", "SSIM", ".3f", f"{P001}, eq. 12", "higher", None),
               ("VIF", "VIF", ".3f", P001, "higher", "VIF (pixel domain)"),
               ("MAE", "MAE", ".4f", P000, "lower", None),
               ("L1", "L1 (0-255)", ".2f", P003, "lower", None),
               ("L2", "L2 (0-255)", ".1f", P003, "lower", None))


def _similarity(region: str) -> tuple[Column, ...]:
    """The pixel similarity columns in one region: `breast_<metric>` "<title>, breast", or the papers' own keys
    "<title>, whole square". 003's breast setting (sec. 6.2) is the breast region's L1, L2 and PSNR."""
    prefix, where = ("breast_", "breast") if region == "breast" else ("", "whole square")
    return tuple(Column(f"{prefix}{key}", f"{title}, {where}", fmt, paper, better, "image",
                        measure=f"{measure or title}, {REGIONS[region]}", region=region)
                 for key, title, fmt, paper, better, measure in _SIMILARITY)


def _settings() -> tuple[Column, ...]:
    out = [Column(f"mass_{key}", f"mass only: {title}", fmt, f"{P003}, sec. 6.2", better, "setting")
           for key, title, fmt, better in (("L1", "L1 (0-255)", ".2f", "lower"), ("L2", "L2 (0-255)", ".1f", "lower"),
                                           ("PSNR", "PSNR (dB)", ".2f", "higher"))]
    for region, cnr_eq in (("breast", "eqs. 10-11"), ("mass", "eq. 9")):
        out += [Column(f"{region}_CNR_real", f"{region} CNR, real DES", ".3f", f"{P003}, {cnr_eq}", None, "setting"),
                Column(f"{region}_CNR_synthetic", f"{region} CNR, synthetic DES", ".3f", f"{P003}, {cnr_eq}", None,
                       "setting"),
                Column(f"{region}_dCNR", f"{region} ΔCNR (synthetic − real)", ".3f", f"{P003}, eq. 12", None,
                       "setting")]
    return tuple(out)


def _change() -> tuple[Column, ...]:
    return tuple(Column(f"LE_{image}_{metric}", f"change LE → {_IMAGE_TITLES[image]}: {metric}", fmt,
                        f"{P000}, change from LE", None, "change")
                 for image in ("DES", "synthetic") for metric, fmt in (("MAE", ".4f"), ("SSIM", ".3f")))


# The tissue values are measured on the evaluated images: normalised to [0, 1] by each image's window, at the
# evaluated size. The Slicer module's CNR table (VirtualContrastLib/cnr.py) measures raw intensities at full
# resolution, a different value under a different name.
TISSUE_UNITS = "normalised [0, 1], evaluated size"


def _tissue() -> tuple[Column, ...]:
    return tuple(Column(f"{what}_{image}", f"{title} ({TISSUE_UNITS}), {_IMAGE_TITLES[image]}", ".3f",
                        f"{P000}, Table 2", None, "tissue")
                 for what, title in (("tissue_CNR", "tissue CNR, fibroglandular vs adipose"),
                                     ("fibroglandular_mean", "fibroglandular mean"), ("adipose_mean", "adipose mean"))
                 for image in TISSUE_IMAGES)


# In the order of summary.csv and the Slicer table: the breast region first.
COLUMNS: tuple[Column, ...] = (
    *_similarity("breast"),
    Column("lesion_MAE", "lesion MAE", ".4f", f"{P002} (error in the lesion)", "lower", "image", region="breast"),
    Column("bright_MAE", "bright-pixel MAE", ".4f", f"{P003} (exponential dampening)", "lower", "image",
           measure=f"bright-pixel MAE (real DES above its {BRIGHT_PERCENTILE:g}th percentile in the breast)",
           region="breast"),
    *_similarity("square"),
    *_settings(),
    *_change(),
    *_tissue(),
)


def keys(group: str | None = None) -> tuple[str, ...]:
    """The per-image value columns (of one group), in registry order."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown column group {group!r} (one of {', '.join(GROUPS)})")
    return tuple(c.key for c in COLUMNS if group is None or c.group == group)


def image_keys(region: str) -> tuple[str, ...]:
    """The "image" columns measured in one of REGIONS, in registry order."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r} (one of {', '.join(REGIONS)})")
    return tuple(c.key for c in COLUMNS if c.group == "image" and c.region == region)


def column(key: str) -> Column:
    """The registry entry of one per-image column; KeyError for a name that is not one."""
    for c in COLUMNS:
        if c.key == key:
            return c
    raise KeyError(f"{key!r} is not a per-image column (evaluation/columns.py)")


def computed(images: ImageSet) -> dict[str, float | None]:
    """The values of the columns that carry their own `compute` (those not produced by a group's function)."""
    return {c.key: c.compute(images) for c in COLUMNS if c.compute is not None}
