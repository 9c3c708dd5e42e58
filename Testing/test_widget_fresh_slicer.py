"""The module's panel in a fresh Slicer 5.10 (issue 12, part B, the panel-level half).

Testing/test_slicer_packages.py proves the library in a fresh Slicer's Python;
Testing/test_widget_gui.py proves the real Widget in the GUI harness with every
package installed. Here both at once: fresh_slicer's child (pydicom 2.4.4 first,
torch, monai, scikit-image, matplotlib, ... refused at import and hidden from
importlib.metadata) runs Testing/fresh_slicer_panel.py, which opens the real
Widget through Testing/slicer_gui as a user who has just installed the extension:
- the module imports and the panel opens without torch, a dialog or a traceback;
- the bundled sample case comes from Sample Data and CNR is measured;
- Synthesize asks ONE question, which lists what goes where and what Slicer
  keeps; answered No, nothing is installed and nothing starts;
- Train asks again; answered Yes, installDependencies (a recorder here: the real
  install is Testing/test_dependencies.py's, from local wheels) gets exactly the
  plan for what Slicer lacks, and the training runs to its end. That is the
  honest outcome: the engine's child is another interpreter, which does not
  inherit the refusals of Slicer's process (in Slicer it sees what the install
  put in place; here this virtual environment, which has it all), while Slicer's
  own process follows the job, fills the loss chart and selects the new model
  still without any of the refused packages.
"""

from __future__ import annotations

import json
import sys

import pytest
from packaging.requirements import Requirement

import slicer_gui
from fresh_slicer import NOT_BUNDLED, REPO, SLICER_PYDICOM, run_in_fresh_slicer
from VirtualContrastLib.dependencies import engineRequirements, installedVersions

PANEL_SCRIPT = REPO / "Testing" / "fresh_slicer_panel.py"
JOB_TIMEOUT = 120  # s: the engine's child imports torch and trains one tiny epoch on 2 busy cores


@pytest.fixture(scope="module")
def panel(small_phantom, tmp_path_factory) -> dict:
    """The child's observations (one run for all the tests of this file)."""
    if slicer_gui.SKIP_REASON:
        pytest.skip(slicer_gui.SKIP_REASON)
    folder = tmp_path_factory.mktemp("fresh-panel")
    arguments = {"folder": str(folder), "manifest": str(small_phantom), "jobTimeout": JOB_TIMEOUT,
                 "installed": installedVersions(sys.path)}
    code = (f"import runpy, sys\nsys.argv = [{str(PANEL_SCRIPT)!r}, {json.dumps(arguments)!r}]\n"
            f"runpy.run_path({str(PANEL_SCRIPT)!r}, run_name='__main__')\n")
    report = run_in_fresh_slicer(code, env={"VIRTUALCONTRAST_PACKAGES": str(folder / "packages"),
                                            "QT_QPA_PLATFORM": "offscreen"}, timeout=JOB_TIMEOUT + 120)
    report["packageFolder"] = str(folder / "packages")
    return report


def lacking() -> set[str]:
    """The engine's requirements that a fresh Slicer does not have at all."""
    return {r.name for r in engineRequirements()} & set(NOT_BUNDLED)


def test_panel_opens_without_the_engines_packages(panel):
    """Module(parent), setup() and enter() under Slicer's packages: no dialog, no traceback, no torch; the
    device and preset lists are filled (devices from nvidia-smi, presets from the engine's tables)."""
    assert panel["pydicom"] == SLICER_PYDICOM
    assert "a fresh Slicer 5.10 lacks it" in panel["torchImport"]  # the refusal is in force in the child
    opened = panel["open"]
    assert opened["entered"] and opened["dialogs"] == [] and opened["slotErrors"] == []
    assert opened["devices"][:2] == ["auto", "cpu"] and opened["trainDevices"] == opened["devices"]
    assert "demo" in opened["presets"] and len(opened["presets"]) >= 2 and opened["preset"] == "demo"
    assert not opened["torchLoaded"] and opened["blocked"] == []
    assert opened["modelPath"].endswith("phantom-demo")  # the bundled starter model, so Synthesize can start


def test_sample_case_and_cnr_in_slicers_process(panel):
    """The Sample Data source the module registered loads the phantom case (DICOM read by pydicom 2.4.4);
    CNR on its tissue segments and lesion fills the results table."""
    sample = panel["sample"]
    assert sample["source"] == "CESM phantom case" and sample["dialogs"] == [] and sample["slotErrors"] == []
    assert sample["inputs"] == ["CESM phantom LE", "CESM phantom DES", "CESM phantom lesions"]
    assert panel["regions"] == {"fibroglandular": ["CESM phantom tissue", "fibroglandular"],
                                "adipose": ["CESM phantom tissue", "adipose"],
                                "lesion": ["CESM phantom lesions", "Lesion 1 - calcifications"]}
    assert sample["cnrRows"] >= 2 and sample["cnrValues"]  # LE and DES rows, every value finite
    assert sample["blocked"] == []


def installQuestion(dialogs: list[dict]) -> dict:
    """The one dialog of a press: the install question."""
    assert [d["kind"] for d in dialogs] == ["question"], dialogs
    return dialogs[0]


def test_synthesize_asks_once_and_no_installs_nothing(panel):
    """The question lists torch through the PyTorch extension, pydicom 3 into the module's folder while
    Slicer keeps 2.4.4, and every package Slicer lacks; No: installDependencies is never called, no job."""
    synthesize = panel["synthesize"]
    question = installQuestion(synthesize["dialogs"])
    text = question["text"]
    assert question["title"] == "Install Python packages" and question["answer"] == "False"  # No / Cancel
    assert "PyTorch extension" in text and "torch >=2.4,<2.14" in text
    assert f"Into Virtual Contrast's own package folder ({panel['packageFolder']})" in text
    assert ("pydicom >=3" in text and f"instead of Slicer's pydicom {SLICER_PYDICOM}" in text
            and f"Slicer keeps {SLICER_PYDICOM}" in text)
    assert "Slicer's own packages are not upgraded" in text
    for name in lacking():
        assert f"\u2022 {name} " in text, name
    assert synthesize["installCalls"] == []
    assert synthesize["jobs"] == {"synthesis": None, "training": None, "evaluation": None}
    assert not synthesize["timerActive"] and synthesize["statusUnchanged"] and synthesize["children"] == []
    assert synthesize["synthesizeEnabled"] and synthesize["slotErrors"] == [] and synthesize["blocked"] == []


def test_train_asks_again_and_yes_installs_the_plan_then_trains(panel):
    """Nothing was installed, so Train asks again; Yes calls installDependencies once with the plan of
    exactly what Slicer lacks (torch by the PyTorch extension, the rest by pip, pydicom replacing 2.4.4);
    the training then runs in the engine's interpreter and Slicer's process reports it, still without torch."""
    train = panel["train"]
    question = installQuestion(train["dialogsAtPress"])
    assert question["answer"] == "True"  # Yes / OK
    (call,) = train["installCalls"]
    assert call["missing"] == {**{name: None for name in lacking()}, "pydicom": SLICER_PYDICOM}
    assert call["torchRequirement"] == ">=2.4,<2.14" and call["folder"] == panel["packageFolder"]
    assert {Requirement(text).name for text in call["pip"]} == set(call["missing"]) - {"torch"}
    # The engine's child: this virtual environment's interpreter (PythonSlicer in Slicer), not the refusing one.
    assert train["command"][:4] == [sys.executable, "-m", "VirtualContrastTraining", "train"], train["command"]
    assert train["statusAtPress"] == "Starting..." and train["cancelEnabled"]
    assert train["state"] == "finished", train["log"]
    assert train["status"].startswith("Finished") and train["progress"] == 100 and train["runFolder"]
    assert train["modelPath"].endswith("run") and train["chartRows"] >= 1
    assert train["dialogs"] == train["dialogsAtPress"] and train["slotErrors"] == []
    assert train["blocked"] == []


def test_nothing_left_and_nothing_refused_was_imported(panel):
    """Slicer's exit leaves no timer, process or unexpected dialog; no refused package was ever imported."""
    assert panel["closeProblems"] == []
    assert panel["blocked"] == [] and not panel["torchLoaded"] and panel["pydicomAtExit"] == SLICER_PYDICOM
