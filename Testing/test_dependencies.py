"""The engine's packages in Slicer (issue 12, parts D1-D5): one list (pyproject), checked by version, torch
through PyTorchUtils, the rest into the module's own folder that only the engine's child sees first, and
devices listed without torch.

The install is real: pip puts hand-built wheels (offline, --no-index) into a
package folder, resolved against a simulated "Slicer site-packages" that
already holds an older version of one package and a dependency of another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from fresh_slicer import REPO, SLICER_510_VERSIONS
from VirtualContrastLib import dependencies
from VirtualContrastLib.dependencies import DependencyError, dependencyPlan, engineRequirements
from VirtualContrastTraining import PACKAGES_VARIABLE



def _pyproject_dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


# ---------------------------------------------------------------- D1: one list, by version

def test_requirements_are_pyprojects_and_nothing_else_repeats_them():
    assert [str(r) for r in engineRequirements()] == [str(Requirement(t)) for t in _pyproject_dependencies()]
    import VirtualContrastLib.logic as logic

    assert not hasattr(logic, "ENGINE_MODULES")
    pins = [re.escape(Requirement(t).name) + r"\s*[<>=~!]=?\s*\d" for t in _pyproject_dependencies()]
    for path in (REPO / "VirtualContrast").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        repeated = [p for p in pins if re.search(r"[\"']" + p, text)]
        assert not repeated, f"{path.relative_to(REPO)} repeats pyproject's pins: {repeated}"


def test_pyproject_is_installed_beside_the_engine():
    """dependencies.py reads pyproject.toml from the engine package's parent folder: the repository here, the
    extension's qt-scripted-modules folder (where the engine folder is installed) in Slicer."""
    assert dependencies.pyprojectPath() == REPO / "pyproject.toml"
    cmake = re.sub(r"#[^\n]*", "", (REPO / "VirtualContrastTraining" / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert re.search(r"set\(ENGINE_REQUIREMENTS_FILE \$\{PROJECT_SOURCE_DIR\}/pyproject\.toml\)", cmake)
    assert re.search(r"configure_file\(\$\{ENGINE_REQUIREMENTS_FILE\} "
                     r"\$\{CMAKE_BINARY_DIR\}/\$\{Slicer_QTSCRIPTEDMODULES_LIB_DIR\}/pyproject\.toml COPYONLY\)", cmake)
    assert re.search(r"install\(FILES \$\{ENGINE_REQUIREMENTS_FILE\} "
                     r"DESTINATION \$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}", cmake)
    # ... which is where the engine's own scripts go (INSTALL_DIR of its ctkMacroCompilePythonScript).
    assert re.search(r"INSTALL_DIR \$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}\s*\)", cmake)


def test_plan_for_a_fresh_slicer_510(tmp_path, monkeypatch):
    """13 of the engine's 16 requirements are missing: torch through the PyTorch extension with pyproject's
    range, 12 into the package folder, pydicom 3 among them while Slicer keeps 2.4.4; numpy, scipy and
    SimpleITK are Slicer's own."""
    monkeypatch.setenv(PACKAGES_VARIABLE, str(tmp_path / "packages"))
    plan = dependencyPlan(slicerVersions=SLICER_510_VERSIONS, folderVersions={})
    assert len(plan.packages) == len(_pyproject_dependencies()) == 16
    assert {p.name for p in plan.packages if p.satisfied} == {"numpy", "scipy", "SimpleITK"}
    assert len(plan.missing) == 13
    assert plan.torchRequirement == ">=2.4,<2.14"
    assert [Requirement(r).name for r in plan.pipRequirements] == [
        "monai", "pydicom", "scikit-image", "slicerio", "pynrrd", "safetensors", "matplotlib", "tqdm", "scikit-learn",
        "openpyxl", "highdicom", "dicognito"]
    assert {p.name: p.replaces for p in plan.missing if p.replaces} == {"pydicom": "2.4.4"}
    text = plan.summary()
    assert text.count("\u2022") == 13
    assert "PyTorch extension (SlicerPyTorch), into Slicer's Python" in text and "torch >=2.4,<2.14" in text
    assert f"Into Virtual Contrast's own package folder ({tmp_path / 'packages'})" in text
    assert "pydicom >=3.0,<4: used instead of Slicer's pydicom 2.4.4 by Virtual Contrast's background processes " \
           "only; Slicer keeps 2.4.4" in text
    assert text.endswith("Install now?")


def test_versions_are_checked_not_imports(tmp_path, monkeypatch):
    """An old monai in Slicer is missing; pydicom 3 in the folder is enough; an old torch is replaced by the
    PyTorch extension (and the dialog says so)."""
    monkeypatch.setenv(PACKAGES_VARIABLE, str(tmp_path))
    slicer = {**SLICER_510_VERSIONS, "monai": "1.3.2", "torch": "2.2.0"}
    plan = dependencyPlan([Requirement(t) for t in ("monai>=1.4,<1.7", "pydicom>=3.0,<4", "torch>=2.4,<2.14")],
                          slicerVersions=slicer, folderVersions={"pydicom": "3.0.1"})
    assert [p.name for p in plan.missing] == ["monai", "torch"]
    assert plan.missing[0].slicerVersion == "1.3.2"
    assert "torch >=2.4,<2.14, replacing the torch 2.2.0 in Slicer's Python" in plan.summary()
    assert dependencyPlan([Requirement("numpy>=99")]).missing, "this Python's own numpy is older than 99"


def test_outside_slicer_there_is_no_folder_and_nothing_to_install(monkeypatch):
    """This virtual environment has the engine installed: nothing is missing, and no folder is used."""
    monkeypatch.delenv(PACKAGES_VARIABLE, raising=False)
    plan = dependencyPlan()
    assert plan.folder is None and plan.missing == []
    assert dependencies.engineVariables() == {}


# ---------------------------------------------------------------- D4: torch through PyTorchUtils, once

class _PyTorchUtils:
    """Stand-in for SlicerPyTorch's module: records installTorch's arguments."""

    calls: list[dict] = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            _PyTorchUtils.calls.append(dict(askConfirmation=askConfirmation,
                                            torchVersionRequirement=torchVersionRequirement))
            return object()


def test_torch_comes_from_pytorchutils_with_pyprojects_range_and_no_second_question(tmp_path, monkeypatch):
    monkeypatch.setenv(PACKAGES_VARIABLE, str(tmp_path))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", _PyTorchUtils)
    _PyTorchUtils.calls.clear()
    plan = dependencyPlan([r for r in engineRequirements() if r.name == "torch"], slicerVersions={}, folderVersions={})
    after = dependencies.installDependencies(plan)
    assert _PyTorchUtils.calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.4,<2.14"}]
    assert after.missing == []  # this venv's torch


def test_without_the_pytorch_extension_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(PACKAGES_VARIABLE, str(tmp_path))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails
    plan = dependencyPlan([Requirement("torch>=2.4")], slicerVersions={}, folderVersions={})
    with pytest.raises(DependencyError, match="Extensions Manager"):
        dependencies.installDependencies(plan)


# ---------------------------------------------------------------- D3: the package folder, for real

def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel of module `name` (whose __version__ is `version`), built by hand."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": f"__version__ = {version!r}\n",
             f"{dist_info}/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                                      + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, text in files.items():
            archive.writestr(name_in_zip, text)
    return path


def _python(code: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**{k: v for k, v in os.environ.items() if k != PACKAGES_VARIABLE}, **env})
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if "__pycache__" not in p.parts}


def test_install_into_the_package_folder_leaves_slicers_python_alone(tmp_path):
    """"Slicer" (a site folder on the path) has vc-probe 1.0 and vc-base 1.0; the engine needs vc-probe>=2,
    which needs vc-base>=1 and vc-extra. pip puts vc-probe 2.0 and vc-extra into the folder, not vc-base
    (Slicer's satisfies it), and writes nothing into Slicer's folder or this Python. Slicer's process then
    imports its own vc-probe 1.0 and, from the folder appended last, vc-extra; the engine's child (its
    __main__ puts the folder first) imports vc-probe 2.0."""
    wheels, slicer_site, folder = tmp_path / "wheels", tmp_path / "slicer-site", tmp_path / "packages"
    wheels.mkdir()
    old = [_wheel(wheels, "vc-probe", "1.0"), _wheel(wheels, "vc-base", "1.0")]
    _wheel(wheels, "vc-probe", "2.0", ("vc-base>=1", "vc-extra>=1"))
    _wheel(wheels, "vc-extra", "1.0")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
                    "--no-deps", "--target", str(slicer_site), *map(str, old)], check=True)
    slicer_before = _listing(slicer_site)
    env = {"PYTHONPATH": os.pathsep.join([str(slicer_site), str(REPO / "VirtualContrast")])}

    slicer_process = _python(f"WHEELS, FOLDER = {str(wheels)!r}, {str(folder)!r}\n" + '''
import json, os
from packaging.requirements import Requirement
from VirtualContrastLib import dependencies
os.environ["VIRTUALCONTRAST_PACKAGES"] = FOLDER
plan = dependencies.dependencyPlan([Requirement("vc-probe>=2")])
before = {p.name: [p.slicerVersion, p.replaces] for p in plan.missing}
after = dependencies.installDependencies(plan, ("--no-index", "--find-links", WHEELS))
import vc_probe, vc_extra
print(json.dumps({"before": before, "after": [p.name for p in after.missing],
                  "folderVersion": after.packages[0].folderVersion, "summary": plan.summary(),
                  "vc_probe": vc_probe.__version__, "vc_extra": vc_extra.__file__,
                  "variables": dependencies.engineVariables()}))
''', env)
    assert slicer_process["before"] == {"vc-probe": ["1.0", "1.0"]}
    assert slicer_process["after"] == [] and slicer_process["folderVersion"] == "2.0"
    assert "Slicer keeps 1.0" in slicer_process["summary"]
    assert slicer_process["vc_probe"] == "1.0", "Slicer's process must keep Slicer's own version"
    assert slicer_process["vc_extra"].startswith(str(folder))
    assert slicer_process["variables"] == {PACKAGES_VARIABLE: str(folder)}

    installed = {p.split("/")[0] for p in _listing(folder)}
    assert {"vc_probe", "vc_probe-2.0.dist-info", "vc_extra", "vc_extra-1.0.dist-info"} <= installed
    assert not any(p.startswith("vc_base") for p in installed), "Slicer's vc-base 1.0 satisfies: not reinstalled"
    assert _listing(slicer_site) == slicer_before
    assert not list(Path(sysconfig.get_paths()["purelib"]).glob("vc_*")), "pip wrote into this Python"

    engine = '''
import json, runpy, sys
sys.argv = ["VirtualContrastTraining", "--version"]
try:
    runpy.run_module("VirtualContrastTraining", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
import vc_probe
print(json.dumps({"vc_probe": vc_probe.__version__}))
'''
    assert _python(engine, {**env, **slicer_process["variables"]}) == {"vc_probe": "2.0"}
    plain_slicer = 'import importlib.util, json, vc_probe\nprint(json.dumps([vc_probe.__version__, ' \
                   'importlib.util.find_spec("vc_extra") is None]))'
    assert _python(plain_slicer, env) == ["1.0", True], "without activate(), Slicer's Python sees nothing of it"


def test_pip_never_brings_torch_from_pypi(tmp_path):
    """monai needs torch: resolved where the torch it needs is absent, pip would download one from PyPI, which
    is the PyTorch extension's job. Simulated with a wheel needing a torch newer than this venv's 2.13."""
    from importlib.metadata import version

    from packaging.version import Version

    assert Version(version("torch")) < Version("2.14"), "the Makefile installs torch 2.13.0"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "vc-needs-torch", "1.0", ("torch>=2.14",))
    _wheel(wheels, "torch", "2.14.0")
    with pytest.raises(DependencyError, match="PyTorch extension"):
        dependencies.installIntoFolder(["vc-needs-torch"], tmp_path / "packages",
                                       ("--no-index", "--find-links", str(wheels)))
    assert not list((tmp_path / "packages").iterdir()), "nothing is installed when the plan is refused"


# ---------------------------------------------------------------- D5: devices without torch

DEVICES = """
import json, os, sys
from VirtualContrastLib.logic import VirtualContrastLogicBase
found = []
for folder, visible in CASES:
    os.environ["PATH"] = folder + os.pathsep + PATH
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    found.append(VirtualContrastLogicBase.availableDevices())
print(json.dumps([found, "torch" in sys.modules]))
"""
TWO_GPUS = 'echo "GPU 0: NVIDIA H100 (UUID: GPU-a)"; echo "GPU 1: NVIDIA H100 (UUID: GPU-b)"'
# (nvidia-smi stand-in, CUDA_VISIBLE_DEVICES, the devices offered)
DEVICE_CASES = [(TWO_GPUS, None, ["auto", "cpu", "cuda:0", "cuda:1"]),
                (TWO_GPUS, "1", ["auto", "cpu", "cuda:0"]),
                (TWO_GPUS, "0,-1,1", ["auto", "cpu", "cuda:0"]),
                (TWO_GPUS, "", ["auto", "cpu"]),
                ('echo "NVIDIA-SMI has failed" >&2; exit 9', None, ["auto", "cpu"])]


def test_devices_are_listed_without_importing_torch(tmp_path):
    """nvidia-smi -L (stand-ins here) lists the GPUs; CUDA_VISIBLE_DEVICES limits them as it limits the engine
    (up to its first entry that is not a device); a failing nvidia-smi leaves auto and cpu. torch, installed
    in this venv, is never imported."""
    cases = []
    for index, (script, visible, _expected) in enumerate(DEVICE_CASES):
        folder = tmp_path / str(index)
        folder.mkdir()
        (folder / "nvidia-smi").write_text(f"#!/bin/sh\n{script}\n")
        (folder / "nvidia-smi").chmod(0o755)
        cases.append((str(folder), visible))
    code = f"CASES, PATH = {cases!r}, {os.environ['PATH']!r}\n" + DEVICES
    found, torch_imported = _python(code, {"PYTHONPATH": str(REPO / "VirtualContrast")})
    assert found == [expected for _script, _visible, expected in DEVICE_CASES]
    assert not torch_imported
