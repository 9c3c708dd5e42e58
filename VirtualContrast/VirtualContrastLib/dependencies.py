"""The engine's Python packages inside Slicer: which are missing, where they go, and installing them.

Slicer 5.10's Python ships some of the engine's packages in versions Slicer
itself relies on (pydicom 2.4.4 for its DICOM module, numpy 2.0.2, scipy
1.13.1) and lacks the others (torch, monai, scikit-image, ...). Installing the
engine's list into Slicer's Python with pip would upgrade pydicom to 3 under
Slicer's DICOM browser without anyone deciding it. So:

- The list is pyproject.toml's `[project] dependencies`, installed beside the
  engine package (VirtualContrastTraining/CMakeLists.txt): one list for pip,
  CI and Slicer. Each requirement is checked by version (importlib.metadata
  and packaging), not by whether a module of that name imports.
- torch comes from the PyTorch extension (PyTorchUtils) into Slicer's Python,
  with pyproject's version range: it picks the build for the GPU driver, and
  other extensions share it.
- Everything else that Slicer's Python does not satisfy goes into the
  module's own package folder (`pip install --target`), never into Slicer's
  site-packages. pip resolves against what the engine will see (the folder,
  then Slicer's Python), so what Slicer already satisfies is not installed
  again.
- The engine's child process (`PythonSlicer -m VirtualContrastTraining`) puts
  the folder FIRST on its path: it is named in the child's environment
  (engineVariables) and the engine's __main__ inserts it before importing
  anything, so the child imports pydicom 3. (A PYTHONPATH entry is not reliable:
  the PythonSlicer launcher adds Slicer's own paths, which may come first.) Slicer's own
  process puts the folder LAST (activate): what Slicer lacks (matplotlib's
  colormaps, scikit-image for the heatmap's breast mask) becomes importable
  there, and every package Slicer ships keeps Slicer's version.

Only the standard library and `packaging` (which Slicer ships) are imported
here: this module runs before anything is installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import VirtualContrastTraining
from VirtualContrastTraining import PACKAGES_VARIABLE

#: Requirements installed by the PyTorch extension into Slicer's Python, never by pip into the folder.
PYTORCH_EXTENSION = ("torch",)
#: How much of a failing pip's output the error message keeps.
PIP_ERROR_LINES = 15


class DependencyError(RuntimeError):
    """Installing failed or cannot start; the message says what to do."""


def pyprojectPath() -> Path:
    """pyproject.toml beside the engine package: the repository root in a checkout, the extension's
    qt-scripted-modules folder when installed."""
    return Path(VirtualContrastTraining.__file__).resolve().parents[1] / "pyproject.toml"


def engineRequirements(path: str | os.PathLike | None = None) -> list[Requirement]:
    """pyproject's `[project] dependencies` whose environment marker applies to this Python."""
    path = Path(path) if path else pyprojectPath()
    try:
        with open(path, "rb") as file:
            texts = tomllib.load(file)["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
        raise DependencyError(f"cannot read the engine's requirements from {path}: {error}") from None
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if r.marker is None or r.marker.evaluate()]


def packageFolder() -> Path | None:
    """The module's own package folder: $VIRTUALCONTRAST_PACKAGES (tests, a folder shared by several
    installations), else (in Slicer) one per Slicer revision beside its settings file ("Slicer-<revision>.ini"),
    as Slicer keeps extensions: its packages were resolved against that Slicer's numpy, scipy, ..., so another
    Slicer starts a folder of its own. None outside Slicer, where the engine uses the environment it runs in."""
    if os.environ.get(PACKAGES_VARIABLE):
        return Path(os.environ[PACKAGES_VARIABLE])
    import slicer  # lazy: Slicer application

    settings = getattr(getattr(slicer, "app", None), "slicerRevisionUserSettingsFilePath", "")
    if not settings:  # no application (slicer-core), or a stand-in without settings files
        return None
    return Path(settings).parent / "VirtualContrast" / f"{Path(settings).stem}-packages"


def installedVersions(paths) -> dict[str, str]:
    """Canonical distribution name -> version on `paths`; the first of a name wins, as for imports."""
    importlib.invalidate_caches()
    versions: dict[str, str] = {}
    for distribution in importlib.metadata.distributions(path=[str(p) for p in paths]):
        name = distribution.metadata["Name"]
        if name:
            versions.setdefault(canonicalize_name(name), distribution.version)
    return versions


def versionRange(specifier) -> str:
    """A specifier set as people write it, lower bounds first: ">=2.4,<2.14"."""
    return ",".join(sorted((str(s) for s in specifier), key=lambda text: (not text.startswith(">"), text)))


def _slicerPaths(folder: Path | None) -> list[str]:
    """This process's import path without the package folder: Slicer's own Python."""
    excluded = os.path.realpath(folder) if folder is not None else None
    return [p for p in sys.path if p and os.path.realpath(p) != excluded]


@dataclass(frozen=True)
class Package:
    """One requirement and the version each place holds (None: absent)."""

    requirement: Requirement
    slicerVersion: str | None = None
    folderVersion: str | None = None

    @property
    def name(self) -> str:
        return self.requirement.name

    @property
    def fromPyTorchExtension(self) -> bool:
        return canonicalize_name(self.name) in PYTORCH_EXTENSION

    @property
    def engineVersion(self) -> str | None:
        """What the engine's child imports: the folder comes first on its path."""
        return self.folderVersion or self.slicerVersion

    @property
    def satisfied(self) -> bool:
        return self.engineVersion is not None and self.requirement.specifier.contains(self.engineVersion, True)

    @property
    def replaces(self) -> str | None:
        """Slicer's own version when it does not satisfy the requirement."""
        if self.slicerVersion and not self.requirement.specifier.contains(self.slicerVersion, True):
            return self.slicerVersion
        return None

    def describe(self) -> str:
        """One line of the install dialog: the requirement, and what happens to Slicer's version."""
        line = f"{self.name} {versionRange(self.requirement.specifier)}"
        if self.replaces and self.fromPyTorchExtension:
            return f"{line}, replacing the torch {self.replaces} in Slicer's Python"
        if self.replaces:
            return (f"{line}: used instead of Slicer's {self.name} {self.replaces} by Virtual Contrast's background "
                    f"processes only; Slicer keeps {self.replaces}")
        return line


@dataclass(frozen=True)
class DependencyPlan:
    """The engine's requirements against Slicer's Python and the module's package folder."""

    packages: tuple[Package, ...]
    folder: Path | None

    @property
    def missing(self) -> list[Package]:
        return [p for p in self.packages if not p.satisfied]

    @property
    def torchRequirement(self) -> str | None:
        """The version range for PyTorchUtils.installTorch when torch is missing, else None."""
        torch = [p for p in self.missing if p.fromPyTorchExtension]
        return versionRange(torch[0].requirement.specifier) if torch else None

    @property
    def pipRequirements(self) -> list[str]:
        """The missing requirements that pip installs into the package folder."""
        return [str(p.requirement) for p in self.missing if not p.fromPyTorchExtension]

    def summary(self) -> str:
        """The one question asked before installing: what goes where, and what stays."""
        lines = ["Virtual Contrast needs Python packages that this Slicer does not have yet."]
        torch = [p for p in self.missing if p.fromPyTorchExtension]
        if torch:
            lines += ["", "Through the PyTorch extension (SlicerPyTorch), into Slicer's Python, in the build that "
                          "suits this computer's GPU driver (with torchvision, and light-the-torch, its installer):"]
            lines += [f"  \u2022 {p.describe()}" for p in torch]
        others = [p for p in self.missing if not p.fromPyTorchExtension]
        if others:
            lines += ["", f"Into Virtual Contrast's own package folder ({self.folder or 'none outside Slicer'}):"]
            lines += [f"  \u2022 {p.describe()}" for p in others]
            lines += ["  and what these need that Slicer does not already have."]
            lines += ["", "Slicer's own packages are not upgraded: only Virtual Contrast's background processes see "
                          "the folder's versions first."]
        lines += ["", "Downloading can take several minutes. Install now?"]
        return "\n".join(lines)


def dependencyPlan(requirements: list[Requirement] | None = None, *, slicerVersions: dict[str, str] | None = None,
                   folderVersions: dict[str, str] | None = None) -> DependencyPlan:
    """The plan for the engine's requirements (pyproject's by default). The version maps (canonical name ->
    version) default to what Slicer's Python and the package folder hold; a test passes a simulated Slicer."""
    requirements = engineRequirements() if requirements is None else requirements
    folder = packageFolder()
    if slicerVersions is None:
        slicerVersions = installedVersions(_slicerPaths(folder))
    if folderVersions is None:
        folderVersions = installedVersions([folder]) if folder is not None and folder.is_dir() else {}
    return DependencyPlan(tuple(Package(r, slicerVersions.get(canonicalize_name(r.name)),
                                        folderVersions.get(canonicalize_name(r.name))) for r in requirements), folder)


def installDependencies(plan: DependencyPlan, indexArguments: tuple[str, ...] = ()) -> DependencyPlan:
    """Install what the plan misses (torch first, through the PyTorch extension, so that pip counts it as
    present), make the folder importable here, and return the plan as it stands afterwards.
    `indexArguments` go to pip (e.g. --no-index --find-links for an offline wheel folder)."""
    if plan.torchRequirement is not None:
        _installTorch(plan.torchRequirement)
    if plan.pipRequirements:
        if plan.folder is None:
            raise DependencyError(f"no package folder outside Slicer: set {PACKAGES_VARIABLE}, or install the engine "
                                  "with `pip install -e .` into the Python that runs it")
        installIntoFolder(plan.pipRequirements, plan.folder, indexArguments)
    activate()
    return dependencyPlan([p.requirement for p in plan.packages])


def installIntoFolder(requirements: list[str], folder: Path, indexArguments: tuple[str, ...] = (),
                      python: str | None = None) -> list[str]:
    """pip resolves `requirements` as the engine will see them (the folder first, then the Python that runs
    pip), then installs exactly the distributions it would add, pinned, into the folder (--target --no-deps):
    the Python's own site-packages is never written. Returns the pins ("name==version")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="VirtualContrast-pip-") as scratch:
        report = Path(scratch) / "report.json"
        _pip(["install", "--dry-run", "--quiet", "--report", str(report), *indexArguments, *requirements],
             folder, python)
        planned = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    pins = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in planned]
    fromPyPI = [pin for pin in pins if canonicalize_name(pin.split("==")[0]) in PYTORCH_EXTENSION]
    if fromPyPI:
        raise DependencyError(f"pip would install {', '.join(fromPyPI)} from PyPI: install torch through the "
                              "PyTorch extension (PyTorch Utils module) first")
    if pins:
        _pip(["install", "--target", str(folder), "--no-deps", "--upgrade", "--quiet", *indexArguments, *pins],
             folder, python)
    return pins


#: `python -c` program: pip with the folder (argv[1]) first on sys.path, where pip looks for what is installed.
_PIP_WITH_FOLDER_FIRST = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
                          "runpy.run_module('pip', run_name='__main__', alter_sys=True)")


def enginePython() -> str:
    """The Python that runs the engine: PythonSlicer inside Slicer (sys.executable is the Slicer
    application there), this interpreter elsewhere."""
    import slicer  # lazy: Slicer application

    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=str(Path(sys.executable).parent))
        if found:
            return found
    return sys.executable


def _pip(arguments: list[str], folder: Path, python: str | None) -> None:
    """Run pip in the engine's Python (PythonSlicer in Slicer) seeing what the engine sees: the folder first."""
    command = [python or enginePython(), "-c", _PIP_WITH_FOLDER_FIRST, str(folder), *arguments]
    done = subprocess.run(command, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-PIP_ERROR_LINES:])
        raise DependencyError(f"pip {' '.join(arguments[:2])} failed (exit code {done.returncode}):\n{output}")


def _installTorch(torchRange: str) -> None:
    """torch through SlicerPyTorch with pyproject's range; its own confirmation is ours, already given."""
    try:
        import PyTorchUtils  # lazy: Slicer application
    except ImportError:
        raise DependencyError("The PyTorch extension (SlicerPyTorch) is not installed: install it from the "
                              "Extensions Manager, restart Slicer and try again.") from None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=torchRange)
    if torch is None:
        raise DependencyError("PyTorch was not installed.")


def engineVariables() -> dict[str, str]:
    """Environment variables for the engine's child: the package folder, once it exists, which the engine's
    __main__ puts first on its path."""
    folder = packageFolder()
    return {PACKAGES_VARIABLE: str(folder)} if folder is not None and folder.is_dir() else {}


def activate() -> None:
    """Slicer's process: the package folder LAST on sys.path, so that what Slicer lacks imports from it
    while every package Slicer ships keeps Slicer's version."""
    folder = packageFolder()
    if folder is not None and folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
        importlib.invalidate_caches()
