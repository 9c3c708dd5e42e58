"""What the module brings with it, so a new user sees the whole job without data or an hour of training.

- A phantom CESM case (LE, DES, lesion segmentation and a tissue segmentation with fibroglandular and
  adipose segments for CNR) offered in Slicer's Sample Data module: one click, offline.
- A small phantom-trained model (the `demo` preset) that Synthesize starts from.

Both are simulated: made from the engine's physics-based phantom by `Resources/make_module_samples.py`
(README, "Install in Slicer"), never from patient data. The model learned phantom images only; it is
for trying the module and is named so wherever it appears (STARTER_MODEL_LABEL).
"""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "Resources"
SAMPLE_FOLDER = RESOURCES / "SampleData"
SAMPLE_NAME = "CESM phantom case"
THUMBNAIL = RESOURCES / "Icons" / "CESMPhantomCase.png"
#: role -> file in SAMPLE_FOLDER; node names are "CESM phantom <role>".
SAMPLE_FILES = {"LE": "CESM-phantom_LE.dcm", "DES": "CESM-phantom_DES.dcm",
                "lesions": "CESM-phantom_lesions.seg.nrrd", "tissue": "CESM-phantom_tissue.seg.nrrd"}

STARTER_MODEL = RESOURCES / "Models" / "phantom-demo"
STARTER_MODEL_LABEL = "phantom-trained demo model (learned simulated images only; not for real mammograms)"


def isStarterModel(path) -> bool:
    """True for the bundled phantom-trained model, wherever the extension is installed."""
    return path is not None and Path(path).resolve() == STARTER_MODEL.resolve()


def sampleNodeName(role: str) -> str:
    return f"{SAMPLE_NAME.replace(' case', '')} {role}"
