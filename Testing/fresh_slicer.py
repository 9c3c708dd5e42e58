"""A child interpreter that sees the Python packages of a fresh Slicer 5.10, for tests of what runs in
Slicer's own process.

Slicer cannot be installed here, but what matters about its Python for the
module is known (../shared/slicer-5.10.0/README.md): pydicom 2.4.4 instead of
our 3, and none of the engine's other packages. The child gets
- pydicom 2.4.4 first on its path (build/slicer-packages, installed by pip
  with --no-deps on first use: `make test` does it, a plain pytest run too);
- an import hook that refuses every package a fresh Slicer lacks, and those
  packages' distributions hidden from importlib.metadata, so that version
  checks see what Slicer would show them;
- VirtualContrast/ and the repository on its path, as Slicer has them.
Everything else (numpy, scipy, SimpleITK, VTK, slicer-core's MRML) is this
virtual environment's.

`python Testing/fresh_slicer.py` prepares the pydicom folder (the Makefile calls it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLICER_PACKAGES = REPO / "build" / "slicer-packages"
# Installed-package versions of a fresh Slicer 5.10's Python (the shared README), canonical names: what
# dependencies.dependencyPlan(slicerVersions=...) is given to plan for it. SimpleITK is built with Slicer
# (version not listed there): any 2.x satisfies the engine.
SLICER_510_VERSIONS = {"numpy": "2.0.2", "scipy": "1.13.1", "pydicom": "2.4.4", "pillow": "11.2.1",
                       "simpleitk": "2.4.0", "requests": "2.32.3", "packaging": "25.0",
                       "typing-extensions": "4.14.0", "pip": "25.1.1"}
SLICER_PYDICOM = SLICER_510_VERSIONS["pydicom"]
# Distribution -> import names of what a fresh Slicer 5.10 lacks (the shared README's list).
NOT_BUNDLED = {
    "torch": ("torch",), "monai": ("monai",), "scikit-image": ("skimage",), "scikit-learn": ("sklearn",),
    "matplotlib": ("matplotlib", "mpl_toolkits", "pylab"), "safetensors": ("safetensors",),
    "slicerio": ("slicerio",), "pynrrd": ("nrrd",), "tqdm": ("tqdm",), "openpyxl": ("openpyxl",),
    "highdicom": ("highdicom",), "dicognito": ("dicognito",), "psutil": ("psutil",),
}

_BOOT = """
import importlib.abc, importlib.machinery, json, re, sys
BLOCKED = set(json.loads({blocked!r}))
HIDDEN = set(json.loads({hidden!r}))

class FreshSlicer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (a fresh Slicer 5.10 lacks it)", name=name)
        return None

sys.meta_path.insert(0, FreshSlicer())
_find = importlib.machinery.PathFinder.find_distributions

def _visible(*args, **kwargs):
    for dist in _find(*args, **kwargs):
        if re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower() not in HIDDEN:
            yield dist

importlib.machinery.PathFinder.find_distributions = staticmethod(_visible)
sys.path[:0] = [{packages!r}, {module!r}, {repo!r}]
"""


def ensure_slicer_packages() -> Path:
    """build/slicer-packages holding Slicer's pydicom (pip from the registry, a few seconds, once)."""
    if not (SLICER_PACKAGES / f"pydicom-{SLICER_PYDICOM}.dist-info").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--upgrade", "--target", str(SLICER_PACKAGES), f"pydicom=={SLICER_PYDICOM}"], check=True)
    return SLICER_PACKAGES


def run_in_fresh_slicer(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    """Run `code` in a fresh-Slicer child; it must print one JSON object as its last stdout line, returned."""
    boot = _BOOT.format(blocked=json.dumps([n for names in NOT_BUNDLED.values() for n in names]),
                        hidden=json.dumps(sorted(NOT_BUNDLED)), packages=str(ensure_slicer_packages()),
                        module=str(REPO / "VirtualContrast"), repo=str(REPO))
    done = subprocess.run([sys.executable, "-c", boot + code], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))
    assert done.returncode == 0, f"fresh-Slicer child failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(ensure_slicer_packages())
