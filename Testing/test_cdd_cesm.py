"""CDD-CESM folder import: a fake collection built from the real sample pairs, its manifest and its summary.

The folder has the collection's layout and quirks (a stray space in a name, an
xlsx sheet "all", a VIA CSV with a point, an unknown shape and coordinates
outside the image) plus the malformed inputs the import must list rather than
abort on (unpaired, unreadable, misnamed, misplaced, duplicate and mismatched images).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import openpyxl
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath

from VirtualContrastTraining.data import cdd_cesm as cdd
from VirtualContrastTraining.data.cdd_cesm import image_key, import_cdd_cesm, is_cdd_cesm_folder
from VirtualContrastTraining.data.cases import read_case_images, shift_to_le
from VirtualContrastTraining.data.prepared import prepare_case
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.preprocessing import PreprocessConfig
from VirtualContrastTraining.data.registration import register_translation
from VirtualContrastTraining.data.segmentation import read_lesion_mask, read_segments
from VirtualContrastTraining.data.via import UNKNOWN_SHAPE
from VirtualContrastTraining.errors import InputError

SHEET_HEADER = ["Image_name", "Patient_ID", "Side", "Type", "Age", "Breast density (ACR)", "BIRADS", "Findings",
                "View", "Tags", "Machine", "Pathology Classification/ Follow up"]
VIA_HEADER = "#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes\n"
POLYGON = {"name": "polygon", "all_points_x": [100, 160, 170, 120], "all_points_y": [200, 190, 260, 270]}


def _sheet_row(name, density, label):
    return [name, 0, "L", "DM", 50, density, "4", "mass", "CC", "", "Senographe", label]


def write_sheet(path: Path, rows, header=SHEET_HEADER, sheet="all") -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    ws.append(header)
    for row in rows:
        ws.append(row)
    book.save(path)
    return path


def write_via(path: Path, rows) -> Path:
    lines = [VIA_HEADER]
    for k, (name, attrs) in enumerate(rows):
        text = json.dumps(attrs).replace('"', '""')
        lines.append(f'{name},1000,{{}},1,{k},"{text}",{{}}\n')
    path.write_text("".join(lines))
    return path


def build_folder(sample: Path, root: Path, *, sheet=True, via=True) -> Path:
    le_dir, des_dir = root / cdd.LE_FOLDER, root / cdd.DES_FOLDER
    le_dir.mkdir(parents=True)
    des_dir.mkdir()
    for name in ("P10_L_{}_CC.png", "P10_L_{}_MLO.png", "P12_L_{}_CC.png", "P12_L_{}_MLO.png", "P207_L_{}_MLO.jpg"):
        shutil.copy(sample / name.format("DM"), le_dir / name.format("DM"))
        target = name.format("CM").replace("P12_L_CM_MLO.png", "P12_L_CM_MLO .png")  # the collection's stray space
        shutil.copy(sample / name.format("CM"), des_dir / target)
    shutil.copy(sample / "P10_L_DM_CC.png", le_dir / "P11_R_DM_CC.png")           # unpaired LE
    (le_dir / "P13_L_DM_CC.jpg").write_bytes(b"not a jpeg at all")              # unreadable
    shutil.copy(sample / "P10_L_CM_CC.png", des_dir / "P13_L_CM_CC.png")
    shutil.copy(sample / "P207_L_DM_MLO.jpg", le_dir / "P15_R_DM_CC.jpg")        # 512x512 LE with a DES
    des = read_image(sample / "P207_L_CM_MLO.jpg").array                          # 40 rows longer (004's P1)
    matplotlib.image.imsave(des_dir / "P15_R_CM_CC.png", np.vstack([des, np.zeros((40, 512))]), cmap="gray",
                            vmin=0, vmax=255)
    shutil.copy(sample / "P10_L_CM_CC.png", le_dir / "P16_L_CM_CC.png")          # a CM in the LE folder
    shutil.copy(sample / "P10_L_CM_MLO.png", des_dir / "P10_L_CM_MLO .png")      # the same breast twice
    (des_dir / "notes.txt").write_text("not an image")
    if sheet:
        write_sheet(root / cdd.WORKBOOK, [
            _sheet_row("P10_L_DM_CC", "C", "Malignant"),
            _sheet_row("P10_L_DM_CC", "B", "Malignant"),      # second finding, disagreeing density
            _sheet_row("P10_L_CM_CC", "C", "Benign"),
            _sheet_row("P12_L_DM_CC", 2, "Normal"),
            _sheet_row("P12_L_CM_MLO ", "D ", "benign"),
            _sheet_row("P207_L_DM_MLO", "E", "Suspicious"),
            _sheet_row("P207_L_CM_MLO", 4.0, "Benign"),
            _sheet_row("overview", "A", "Normal"),
            _sheet_row(None, None, None),
        ])
    if via:
        write_via(root / cdd.SEGMENTATION_CSV, [
            ("P10_L_DM_CC.jpg", {"name": "ellipse", "cx": 128, "cy": 200, "rx": 20, "ry": 10}),   # line 2
            ("P10_L_DM_CC.jpg", {"name": "point", "cx": 60, "cy": 300}),                          # 3
            ("P10_L_DM_CC.jpg", {"name": "circle", "cx": 250, "cy": 100, "r": 15}),               # 4: partly out
            ("P10_L_DM_CC.jpg", {"name": "ellipse", "cx": -60, "cy": 200, "rx": 44, "ry": 37}),  # 5: wholly out
            ("P10_L_DM_CC.jpg", {"name": "rect", "x": 5, "y": 5, "width": 9, "height": 9}),       # 6: unknown
            ("P10_L_CM_CC.jpg", {"name": "circle", "cx": 120, "cy": 210, "r": 30}),               # 7: DM wins
            ("P12_L_CM_MLO .jpg", POLYGON),                                                       # 8: CM only
            ("P207_L_DM_MLO.jpg", {"name": "circle", "cx": 300, "cy": 250, "r": 40}),             # 9
            ("P11_R_DM_CC.jpg", {"name": "circle", "cx": 50, "cy": 50, "r": 5}),                  # 10: unpaired
            ("P99_L_DM_CC.jpg", {"name": "circle", "cx": 50, "cy": 50, "r": 5}),                  # 11: absent
            ("scan.jpg", {"name": "circle", "cx": 50, "cy": 50, "r": 5}),                         # 12: no name
            # 13, 14: full-size coordinates (the collection's) on a resized copy: no mask for that image
            ("P12_L_DM_CC.jpg", {"name": "circle", "cx": 120, "cy": 150, "r": 20}),
            ("P12_L_DM_CC.jpg", {"name": "ellipse", "cx": 310, "cy": 1692, "rx": 44, "ry": 37}),
        ])
    return root


@pytest.fixture(scope="module")
def imported(cdd_sample, tmp_path_factory):
    root = build_folder(cdd_sample, tmp_path_factory.mktemp("cdd") / "CDD-CESM")
    out = root.parent / "out" / "cases.csv"
    return root, import_cdd_cesm(root, out)


def _disc(shape, cx, cy, r):
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return (rows - cy) ** 2 + (cols - cx) ** 2 < r * r


def test_cases_offsets_density_and_label(imported):
    root, report = imported
    cases = read_manifest(report.manifest_path, require_des=True)
    assert [c.case_id for c in cases] == ["P10_L_CC", "P10_L_MLO", "P12_L_CC", "P12_L_MLO", "P15_R_CC",
                                          "P207_L_MLO"]
    by_id = {c.case_id: c for c in cases}
    p12 = by_id["P12_L_MLO"]
    assert (p12.patient_id, p12.laterality, p12.view) == ("P12", "L", "MLO")
    assert Path(p12.le_path) == (root / cdd.LE_FOLDER / "P12_L_DM_MLO.png").resolve()
    assert Path(p12.des_path) == (root / cdd.DES_FOLDER / "P12_L_CM_MLO .png").resolve()
    for case in cases:
        x, y = case.des_offset()
        assert abs(x) <= 10 and abs(y) <= 10
    # A DES of another size than its LE (004's P1_L_MLO: 1393x2129 vs 1390x2341) lands on the LE's grid.
    p15 = by_id["P15_R_CC"]
    assert read_case_images(p15)[1].shape == read_image(p15.le_path).shape == (512, 512)
    assert p15.des_offset() == by_id["P207_L_MLO"].des_offset()
    le, des = read_image(p12.le_path).array, read_image(p12.des_path).array
    assert p12.des_offset() == register_translation(le, des).offset != (0, 0)
    # read_case_images applies the stored offset with shift_to_le
    assert np.array_equal(read_case_images(p12)[1].array, shift_to_le(des, p12.des_offset()))
    facts = {c.case_id: (c.density, c.label) for c in cases}
    assert facts == {
        "P10_L_CC": ("c", "malignant"),   # the LE's first row; malignant beats the DES row's benign
        "P10_L_MLO": ("", ""),            # no row in the sheet
        "P15_R_CC": ("", ""),
        "P12_L_CC": ("b", "normal"),      # density 2 -> b
        "P12_L_MLO": ("d", "benign"),     # only the DES row, stray spaces in name and value
        "P207_L_MLO": ("d", "benign"),    # the LE row's E and Suspicious are unusable; the DES row's 4.0
    }


def test_lesion_masks_on_the_le_grid(imported):
    root, report = imported
    cases = {c.case_id: c for c in read_manifest(report.manifest_path)}
    mask_dir = report.manifest_path.parent / "cases_masks"
    assert sorted(p.name for p in mask_dir.iterdir()) == ["P10_L_CC.seg.nrrd", "P12_L_MLO.seg.nrrd",
                                                         "P207_L_MLO.seg.nrrd"]
    assert not [p for p in mask_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert cases["P10_L_MLO"].lesion_path == cases["P12_L_CC"].lesion_path == ""

    p10 = cases["P10_L_CC"]
    le = read_image(p10.le_path)
    shape = le.shape
    assert shape == (512, 256)
    rows, cols = np.mgrid[0:512, 0:256]
    ellipse = ((rows - 200) / 10) ** 2 + ((cols - 128) / 20) ** 2 < 1
    expected = ellipse | _disc(shape, 60, 300, 25) | _disc(shape, 250, 100, 15)  # circle clipped at column 255
    assert np.array_equal(read_lesion_mask(p10.lesion_path, le), expected)
    assert [name for name, _ in read_segments(p10.lesion_path)] == [
        "lesion 1 (ellipse)", "lesion 2 (point)", "lesion 3 (circle)"]

    # Annotated on the DES only: the polygon moves into the LE frame with the registered offset.
    p12 = cases["P12_L_MLO"]
    le12 = read_image(p12.le_path)
    inside = MplPath(np.c_[POLYGON["all_points_x"], POLYGON["all_points_y"]]).contains_points(
        np.c_[cols.ravel(), rows.ravel()]).reshape(shape)
    mask = read_lesion_mask(p12.lesion_path, le12)
    expected = shift_to_le(inside, p12.des_offset())
    outline = sum(np.hypot(np.diff(POLYGON["all_points_x"] + POLYGON["all_points_x"][:1]),
                           np.diff(POLYGON["all_points_y"] + POLYGON["all_points_y"][:1])))
    assert (mask ^ expected).sum() <= outline / 4  # the rasterisers differ only on the outline
    assert (mask ^ inside).sum() > outline  # unmoved, it would not fit

    p207 = cases["P207_L_MLO"]
    assert np.array_equal(read_lesion_mask(p207.lesion_path, read_image(p207.le_path)), _disc((512, 512), 300, 250, 40))


def test_import_summary_lists_each_problem_with_its_reason(imported):
    root, report = imported
    le_dir, des_dir = root / cdd.LE_FOLDER, root / cdd.DES_FOLDER
    groups = report.skipped_by_reason()
    assert {reason: sorted(paths) for reason, paths in groups.items()} == {
        cdd.ORPHAN_REGION: sorted([
            f"{cdd.SEGMENTATION_CSV} line 10 (P11_R_DM_CC.jpg)", f"{cdd.SEGMENTATION_CSV} line 11 (P99_L_DM_CC.jpg)",
            f"{cdd.SEGMENTATION_CSV} line 12 (scan.jpg)"]),
        cdd.UNPAIRED_LE: [str((le_dir / "P11_R_DM_CC.png").resolve())],
        cdd.UNREADABLE: [groups[cdd.UNREADABLE][0]],
        cdd.WRONG_FOLDER: [str((le_dir / "P16_L_CM_CC.png").resolve())],
        cdd.DUPLICATE: [f"{(des_dir / 'P10_L_CM_MLO.png').resolve()} (same as P10_L_CM_MLO .png)"],
        cdd.BAD_NAME: [str((des_dir / "notes.txt").resolve())],
        UNKNOWN_SHAPE: [f"{cdd.SEGMENTATION_CSV} line 6 (P10_L_DM_CC.jpg: shape 'rect')"],
        cdd.OUTSIDE: [f"{cdd.SEGMENTATION_CSV} line 5 (P10_L_DM_CC.jpg: ellipse 3)"],
        cdd.CLIPPED: [groups[cdd.CLIPPED][0]],
        cdd.BEYOND: ["P12_L_DM_CC.jpg: coordinates up to x 354, y 1729 on an image of 256 x 512 px"],
        cdd.ON_BOUND: [groups[cdd.ON_BOUND][0]],
        cdd.BAD_SHEET_NAME: [f"{cdd.WORKBOOK} row 9 ('overview')"],
        cdd.NO_SHEET_ROW: ["P10_L_MLO", "P15_R_CC"],
        cdd.DENSITY_CONFLICT: ["P10_L_CC (c, b, c)"],
        cdd.BAD_DENSITY: [f"{cdd.WORKBOOK} row 7 ('E')"],
        cdd.BAD_LABEL: [f"{cdd.WORKBOOK} row 7 ('Suspicious')"],
    }
    assert re.fullmatch(r"1 pair\(s\) at \+-10 px: P\d+_L_(CC|MLO) \(-?\d+, -?\d+\)", groups[cdd.ON_BOUND][0])
    unreadable = groups[cdd.UNREADABLE][0]
    assert unreadable.startswith(str((le_dir / "P13_L_DM_CC.jpg").resolve()))
    # The circle at column 250 with r 15 reaches column 264: its columns 256..264 are cut off.
    clipped = groups[cdd.CLIPPED][0]
    full = _disc((512, 300), 250, 100, 15)
    assert clipped == (f"{cdd.SEGMENTATION_CSV} line 4 (P10_L_DM_CC.jpg: circle 2): "
                       f"{full[:, 256:].sum()} of {full.sum()} px outside")


def test_prepare_case_on_the_imported_manifest(imported):
    _, report = imported
    config = PreprocessConfig(size=64)
    for case in read_manifest(report.manifest_path, require_des=True):
        prepared = prepare_case(case, config)
        assert prepared.le.shape == prepared.des.shape == prepared.mask.shape == (64, 64)
        assert prepared.has_mask == bool(case.lesion_path)
        assert (prepared.mask.sum() > 0) == prepared.has_mask


def test_missing_or_malformed_sheet_and_csv_are_reported_not_fatal(cdd_sample, tmp_path):
    root = tmp_path / "a"
    for kind, folder in (("DM", cdd.LE_FOLDER), ("CM", cdd.DES_FOLDER)):  # one small real pair: fast imports
        (root / folder).mkdir(parents=True)
        crop = read_image(cdd_sample / f"P10_L_{kind}_CC.png").array[150:278, :128]
        sitk.WriteImage(sitk.GetImageFromArray(crop), str(root / folder / f"P10_L_{kind}_CC.png"))
    shutil.copy(cdd_sample / "P12_L_CM_CC.png", root / cdd.DES_FOLDER)
    report = import_cdd_cesm(root, tmp_path / "m.csv")
    assert [c.case_id for c in report.cases] == ["P10_L_CC"]
    assert (report.cases[0].density, report.cases[0].label, report.cases[0].lesion_path) == ("", "", "")
    assert report.skipped_by_reason() == {
        cdd.NO_WORKBOOK: [str(root / cdd.WORKBOOK)], cdd.NO_CSV: [str(root / cdd.SEGMENTATION_CSV)],
        cdd.ON_BOUND: ["1 pair(s) at +-10 px: P10_L_CC (-10, 4)"],  # a crop of a resized copy: at 004's bound
        cdd.UNPAIRED_DES: [str((root / cdd.DES_FOLDER / "P12_L_CM_CC.png").resolve())]}

    write_sheet(root / cdd.WORKBOOK, [["P10_L_DM_CC", "x"]], header=["Image_name", "Comment"])
    (root / cdd.SEGMENTATION_CSV).write_text("#filename,region_id\nP10_L_DM_CC.jpg,0\n")
    report = import_cdd_cesm(root, tmp_path / "m.csv")
    reasons = report.skipped_by_reason()
    assert sorted(reasons[cdd.MISSING_COLUMN]) == [
        f"{root / cdd.WORKBOOK} sheet 'all' column 'Breast density (ACR)'",
        f"{root / cdd.WORKBOOK} sheet 'all' column 'Pathology Classification/ Follow up'"]
    assert reasons[cdd.BAD_CSV] == [f"{root / cdd.SEGMENTATION_CSV} (VIA CSV lacks column(s) region_shape_attributes "
                                    "(header: #filename, region_id))"]
    assert cdd.NO_SHEET_ROW not in reasons  # the row exists; only its columns are missing

    write_sheet(root / cdd.WORKBOOK, [], sheet="Sheet1")
    reasons = import_cdd_cesm(root, tmp_path / "m.csv").skipped_by_reason()
    assert reasons[cdd.BAD_WORKBOOK] == [f"{root / cdd.WORKBOOK} (no sheet 'all'; sheets: Sheet1)"]
    (root / cdd.WORKBOOK).write_bytes(b"PK\x03\x04 broken zip")
    reasons = import_cdd_cesm(root, tmp_path / "m.csv").skipped_by_reason()
    assert list(map(len, [reasons[cdd.BAD_WORKBOOK]])) == [1]
    assert reasons[cdd.BAD_WORKBOOK][0].startswith(str(root / cdd.WORKBOOK))


def test_no_pair_is_an_input_error_and_writes_nothing(cdd_sample, tmp_path):
    root = tmp_path / "c"
    (root / cdd.LE_FOLDER).mkdir(parents=True)
    (root / cdd.DES_FOLDER).mkdir()
    shutil.copy(cdd_sample / "P10_L_DM_CC.png", root / cdd.LE_FOLDER)
    with pytest.raises(InputError, match="no LE/DES pair could be imported: unpaired low-energy") as info:
        import_cdd_cesm(root, tmp_path / "out.csv")
    assert info.value.path == str(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    with pytest.raises(InputError, match="not a CDD-CESM folder"):
        import_cdd_cesm(tmp_path / "elsewhere", tmp_path / "out.csv")


def test_folder_detection_and_names(tmp_path):
    assert not is_cdd_cesm_folder(tmp_path)
    assert not is_cdd_cesm_folder(tmp_path / "absent")
    (tmp_path / "low energy images of CDD-CESM").mkdir()
    assert not is_cdd_cesm_folder(tmp_path)
    (tmp_path / "Subtracted images of CDD-CESM").write_text("a file, not a folder")
    assert not is_cdd_cesm_folder(tmp_path)
    (tmp_path / "Subtracted images of CDD-CESM").unlink()
    (tmp_path / "Subtracted  images of  CDD-CESM").mkdir()
    assert is_cdd_cesm_folder(tmp_path)
    assert image_key("P12_L_CM_MLO .jpg") == cdd.ImageKey(12, "L", "MLO", "CM")
    assert image_key(" p3_r_dm_cc") == cdd.ImageKey(3, "R", "CC", "DM")
    assert image_key("P3_R_DM_CC.JPEG").case_id == "P3_R_CC"
    assert image_key("P3_R_DM_CC.txt") is None and image_key("P3_X_DM_CC.jpg") is None
    assert image_key("P3_R_DM_CC_2.jpg") is None


def test_the_import_command_recognises_a_cdd_cesm_folder(cdd_sample, tmp_path, capsys):
    from VirtualContrastTraining.cli import main

    root = build_folder(cdd_sample, tmp_path / "CDD-CESM")
    out = tmp_path / "out" / "cdd.csv"
    assert main(["import", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"6 LE/DES pairs, 3 with a lesion mask -> {out}")
    assert f"  1 x {cdd.UNREADABLE}" in printed and (out.parent / "cdd_masks").is_dir()
    assert [c.case_id for c in read_manifest(out)][0] == "P10_L_CC"


def build_phantom_collection(root: Path, shifts: dict[str, tuple[int, int]] | None = None,
                             via_rows: list | None = None) -> Path:
    """Phantom images as 8-bit PNGs in CDD-CESM's layout, each DES moved by a known offset and 30 rows
    longer, a sheet and VIA rows. The DES stand-in is the inverted LE: the phantom's real DES cancels
    the tissue texture (as recombination does), which leaves a horizontal shift along the chest wall
    without a unique MI optimum."""
    from VirtualContrastTraining.data.phantom import simulate_case

    le_dir, des_dir = root / cdd.LE_FOLDER, root / cdd.DES_FOLDER
    le_dir.mkdir(parents=True)
    des_dir.mkdir()
    shifts = shifts or {"P1_L_{}_CC.png": (3, -5), "P1_L_{}_MLO.png": (-6, 2)}
    for n, (name, (x, y)) in enumerate(shifts.items()):
        case = simulate_case(np.random.default_rng(n), pixel_mm=1.0, laterality="L",
                             view=name.split("_")[-1][:-4], density="c", lesions=[])
        le = np.interp(case.le, (1700, 3000), (0, 255))
        des = 255 - le
        moved = np.vstack([shift_to_le(des, (-x, -y)), np.zeros((30, des.shape[1]))])  # aligned by (x, y)
        matplotlib.image.imsave(le_dir / name.format("DM"), le, cmap="gray", vmin=0, vmax=255)
        matplotlib.image.imsave(des_dir / name.format("CM"), moved, cmap="gray", vmin=0, vmax=255)
    write_sheet(root / cdd.WORKBOOK, [_sheet_row("P1_L_DM_CC", "B", "Benign"),
                                      _sheet_row("P1_L_DM_MLO", 3, "Malignant")])
    write_via(root / cdd.SEGMENTATION_CSV, via_rows or [
        ("P1_L_DM_CC.jpg", {"name": "point", "cx": 60, "cy": 80}),
        ("P1_L_CM_MLO.jpg", {"name": "circle", "cx": 70, "cy": 90, "r": 12})])
    return root


def test_a_phantom_collection_imports_without_the_shared_samples(tmp_path):
    """The same code path as the real samples, on phantom images (no ../shared needed): registration of
    a DES of another size, masks from DM and CM-only annotations, sheet facts."""
    root = build_phantom_collection(tmp_path / "CDD-CESM")
    report = import_cdd_cesm(root, tmp_path / "out" / "cases.csv")
    cases = {c.case_id: c for c in read_manifest(report.manifest_path)}
    assert {k: (c.des_offset(), c.density, c.label) for k, c in cases.items()} == {
        "P1_L_CC": ((3, -5), "b", "benign"), "P1_L_MLO": ((-6, 2), "c", "malignant")}
    cc, mlo = cases["P1_L_CC"], cases["P1_L_MLO"]
    le_cc, le_mlo = read_image(cc.le_path), read_image(cc.le_path.replace("CC", "MLO"))
    assert np.array_equal(read_lesion_mask(cc.lesion_path, le_cc), _disc(le_cc.shape, 60, 80, 25))
    # Drawn on the DES only: moved onto the LE's grid by the registered offset.
    expected = shift_to_le(_disc(read_image(mlo.des_path).shape, 70, 90, 12), (-6, 2), le_mlo.shape)
    assert np.array_equal(read_lesion_mask(mlo.lesion_path, le_mlo), expected)
    assert read_case_images(mlo)[1].shape == le_mlo.shape
    assert report.skipped == []


def test_the_slicer_logic_loads_a_registered_case_on_the_les_grid(tmp_path, vc_logic):
    import slicer

    manifest = import_cdd_cesm(build_phantom_collection(tmp_path / "CDD-CESM"),
                               tmp_path / "out" / "cases.csv").manifest_path
    case = vc_logic.loadManifestCase(manifest, "P1_L_MLO")
    le, des = slicer.util.arrayFromVolume(case.le)[0], slicer.util.arrayFromVolume(case.des)[0]
    row = {c.case_id: c for c in read_manifest(manifest)}["P1_L_MLO"]
    assert des.shape == le.shape and np.array_equal(des, read_case_images(row)[1].array)
    assert case.segmentation.GetSegmentation().GetNumberOfSegments() == 1
    with pytest.raises(InputError, match="no case 'P9_L_CC'"):
        vc_logic.loadManifestCase(manifest, "P9_L_CC")



def test_an_offset_on_the_search_bound_is_reported_and_a_wider_search_finds_it(tmp_path, capsys):
    """Generated pairs (no ../shared): the CC's DES is 13 px off, beyond 004's +-10. The default search stops
    at the bound and says so in one line naming the pair; --search-px 15 finds the offset and is silent. The
    MLO's annotation is in coordinates 4x its image (a full-size annotation on a resized copy): no mask, one
    line naming the file."""
    from VirtualContrastTraining.cli import main

    root = build_phantom_collection(
        tmp_path / "CDD-CESM", {"P1_L_{}_CC.png": (13, -2), "P1_L_{}_MLO.png": (-6, 2)},
        [("P1_L_DM_CC.jpg", {"name": "point", "cx": 60, "cy": 80}),
         ("P1_L_DM_MLO.jpg", {"name": "circle", "cx": 700, "cy": 900, "r": 40})])
    assert main(["import", str(root), "--out", str(tmp_path / "a.csv")]) == 0
    printed = capsys.readouterr().out
    cases = {c.case_id: c for c in read_manifest(tmp_path / "a.csv")}
    assert cases["P1_L_CC"].des_offset()[0] == 10
    assert f"  1 x {cdd.ON_BOUND}\n      1 pair(s) at +-10 px: P1_L_CC (10, " in printed
    shape = read_image(cases["P1_L_MLO"].le_path).shape
    assert cases["P1_L_MLO"].lesion_path == "" and cases["P1_L_CC"].lesion_path
    assert (f"  1 x {cdd.BEYOND}\n      P1_L_DM_MLO.jpg: coordinates up to x 740, y 940 on an image of "
            f"{shape[1]} x {shape[0]} px") in printed

    assert main(["import", str(root), "--out", str(tmp_path / "b.csv"), "--search-px", "15"]) == 0
    assert cdd.ON_BOUND not in capsys.readouterr().out
    assert {c.case_id: c.des_offset() for c in read_manifest(tmp_path / "b.csv")} == {
        "P1_L_CC": (13, -2), "P1_L_MLO": (-6, 2)}
