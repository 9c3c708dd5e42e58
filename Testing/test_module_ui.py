"""The Slicer module's static parts, checked without Slicer.

Slicer loads VirtualContrast.ui with its own widget classes; here PySide6's
QUiLoader loads the same file offscreen (unknown Slicer/CTK classes fall back
to their <extends> base class), which is enough to catch the mistakes that
only show when a user opens the module: a `self.ui.<name>` the .ui lacks, a
`SlicerParameterName` that names no parameter or binds a widget the wrapper
cannot drive, an MRML widget that never gets the scene, a script or resource
missing from the CMake lists (so absent from the installed extension).
"""

from __future__ import annotations

import ast
import os
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# Before any QApplication exists: render nowhere, so the test runs on machines without a display.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

from PySide6.QtCore import QFile, QObject, QtMsgType, qInstallMessageHandler  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "VirtualContrast"
MODULE_SCRIPT = MODULE_DIR / "VirtualContrast.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "VirtualContrast.ui"
ENGINE_DIR = REPO / "VirtualContrastTraining"

#: Which widget classes slicer.parameterNodeWrapper can bind to which field types
#: (its GUI connectors; the type is the field's annotation without Annotated/validators).
BINDABLE = {
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider", "QComboBox"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "QComboBox"},
    "str": {"QLineEdit", "QTextEdit", "QComboBox"},
    "pathlib.Path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "node": {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"},
}

#: Widgets that need the scene: the .ui must connect the top-level mrmlSceneChanged signal to each.
MRML_WIDGET_CLASSES = {"qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "qSlicerMarkupsPlaceWidget",
                       "qMRMLSubjectHierarchyTreeView", "qMRMLSubjectHierarchyComboBox"}


# ---------------------------------------------------------------- parsing helpers

def _module_tree() -> ast.Module:
    return ast.parse(MODULE_SCRIPT.read_text(encoding="utf-8"), filename=str(MODULE_SCRIPT))


def ui_names_used(tree: ast.Module) -> set[str]:
    """Every <name> in `self.ui.<name>` (or `widget.ui.<name>` in the self-test), and in
    `getattr(self.ui, f"{key}Suffix")` for each literal value of `key`.

    The values of a loop variable are the string literals of every `for key in (...)` (or comprehension)
    over a literal tuple in the module: a method that takes `key` is called from such loops.
    """
    names = {node.attr for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
             and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
             and node.value.value.id in ("self", "widget")}
    loop_values: dict[str, set[str]] = {}
    for loop in ast.walk(tree):
        if isinstance(loop, (ast.For, ast.comprehension)) and isinstance(loop.target, ast.Name) \
                and isinstance(loop.iter, (ast.Tuple, ast.List)):
            loop_values.setdefault(loop.target.id, set()).update(
                e.value for e in loop.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    for node in ast.walk(tree):
        names |= _formatted_ui_names(node, loop_values)
    return names


def _formatted_ui_names(node: ast.AST, loop_values: dict[str, set[str]]) -> set[str]:
    """Names built by getattr(self.ui, f"{variable}Suffix"), one per value of the variable."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[0], ast.Attribute) and node.args[0].attr == "ui"):
        return set()
    template = node.args[1]
    if isinstance(template, ast.Constant):
        return {template.value}
    if isinstance(template, ast.Name):
        # A loop over a literal tuple gives the names; other variables (names from VirtualContrastLib.panel
        # or a class table) are checked by test_widget_name_tables_name_ui_widgets.
        return loop_values.get(template.id, set())
    parts = template.values if isinstance(template, ast.JoinedStr) else []
    resolvable = (len(parts) == 2 and isinstance(parts[0], ast.FormattedValue)
                  and isinstance(parts[0].value, ast.Name) and parts[0].value.id in loop_values
                  and isinstance(parts[1], ast.Constant))
    assert resolvable, f"VirtualContrast.py line {node.lineno}: getattr(self.ui, ...) this test cannot resolve"
    return {f"{value}{parts[1].value}" for value in loop_values[parts[0].value.id]}


def parameter_fields(tree: ast.Module) -> dict[str, str]:
    """{field: bindable kind} of the @parameterNodeWrapper class, read from its annotations."""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)
               and any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list)]
    assert len(classes) == 1, "VirtualContrast.py must define exactly one @parameterNodeWrapper class"
    aliases = {}  # module-level `RegionNode = Union[...]`
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            aliases[node.targets[0].id] = node.value
    fields = {}
    for stmt in classes[0].body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            fields[stmt.target.id] = _kind(stmt.annotation, aliases)
    return fields


def _kind(annotation: ast.expr, aliases: dict[str, ast.expr]) -> str:
    """'int', 'float', 'str', 'bool', 'pathlib.Path' or 'node' (an MRML node class or a Union of them)."""
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated":
        return _kind(annotation.slice.elts[0], aliases)
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) in ("Union", "Optional"):
        members = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        kinds = {_kind(m, aliases) for m in members if ast.unparse(m) != "None"}
        assert len(kinds) == 1, f"unsupported union {ast.unparse(annotation)}"
        return kinds.pop()  # Optional[X] binds as X; a union of node classes as a node
    text = ast.unparse(annotation)
    if text in aliases:
        return _kind(aliases[text], aliases)
    if text.startswith("vtkMRML"):
        return "node"
    assert text in BINDABLE, f"unsupported parameter type {text}"
    return text


def ui_widgets() -> dict[str, ET.Element]:
    """{objectName: <widget> element} of the .ui file."""
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _property(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop.findtext("string")
    return None


def cmake_list(path: Path, variable: str) -> list[str]:
    """Items of `set(VARIABLE ...)` in a CMakeLists.txt, ${MODULE_NAME} expanded, comments dropped."""
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    match = re.search(r"set\(\s*" + re.escape(variable) + r"\s+(.*?)\)", text, re.S)
    assert match, f"{path.relative_to(REPO)} has no set({variable} ...)"
    module = re.search(r"set\(\s*MODULE_NAME\s+(\S+?)\s*\)", text)
    items = match.group(1).split()
    if module:
        items = [item.replace("${MODULE_NAME}", module.group(1)) for item in items]
    return items


def files_under(folder: Path, suffix: str | None = None, exclude: tuple[str, ...] = ()) -> set[str]:
    """Files below `folder` (posix paths relative to it), without caches and build leftovers."""
    found = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        if rel.parts[0] in exclude:
            continue
        if suffix is None or path.name.endswith(suffix):
            found.add(rel.as_posix())
    return found


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def app() -> QApplication:
    """One QApplication per process (Qt allows no second one); Qt's fallback warnings kept quiet."""
    def quiet(kind, context, message):
        if kind in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
            print(message)
    qInstallMessageHandler(quiet)
    return QApplication.instance() or QApplication([])


@pytest.fixture(scope="session")
def loaded_ui(app) -> QWidget:
    """The .ui as QUiLoader builds it."""
    file = QFile(str(UI_FILE))
    assert file.open(QFile.ReadOnly), f"cannot open {UI_FILE}"
    loader = QUiLoader()
    widget = loader.load(file)
    file.close()
    assert widget is not None, f"QUiLoader could not load the .ui: {loader.errorString()}"
    return widget


# ---------------------------------------------------------------- (a) the .ui and the Widget agree

def test_ui_top_level_is_the_module_widget(loaded_ui):
    """Slicer's loadUI + setMRMLScene need a qMRMLWidget named like the module at the top."""
    root = ET.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "VirtualContrast")
    assert loaded_ui.objectName() == "VirtualContrast"


def test_ui_has_the_five_sections(loaded_ui):
    """Inputs, Synthesize, CNR, Train, Evaluate, as collapsible sections in this order."""
    widgets = ui_widgets()
    sections = [(name, _property(w, "text")) for name, w in widgets.items() if w.get("class") == "ctkCollapsibleButton"]
    assert [text for _, text in sections] == ["Inputs", "Synthesize", "CNR", "Train", "Evaluate"]
    for name, _ in sections:
        assert loaded_ui.findChild(QWidget, name) is not None


def test_every_ui_name_used_by_the_widget_exists(loaded_ui):
    """Each self.ui.<name> in VirtualContrast.py is a child of the loaded .ui (Slicer would raise AttributeError)."""
    used = ui_names_used(_module_tree())
    # The Widget names some 25 widgets itself (buttons and progress widgets come from tables checked by
    # test_widget_name_tables_name_ui_widgets): far fewer means this parser stopped seeing them.
    assert len(used) > 20, f"suspiciously few self.ui names found: {sorted(used)}"
    missing = sorted(name for name in used if loaded_ui.findChild(QObject, name) is None)
    assert not missing, f"used in VirtualContrast.py but absent from the .ui: {missing}"


def test_widget_name_tables_name_ui_widgets(loaded_ui):
    """The names the Widget takes from tables (panel.buttonStates, JOB_WIDGETS) are widgets of the .ui."""
    from VirtualContrastLib import panel

    tables = [node for node in ast.walk(_module_tree()) if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "JOB_WIDGETS" for t in node.targets)]
    assert len(tables) == 1, "VirtualContrastWidget.JOB_WIDGETS not found"
    jobWidgets = {name for pair in ast.literal_eval(tables[0].value).values() for name in pair}
    names = set(panel.buttonStates(panel.PanelState())) | jobWidgets
    missing = sorted(name for name in names if loaded_ui.findChild(QObject, name) is None)
    assert not missing, f"named by the Widget's tables but absent from the .ui: {missing}"


def test_parameter_names_name_fields_and_bindable_widgets(loaded_ui):
    """Each SlicerParameterName names a parameter-node field, on a widget class the wrapper can bind to it."""
    fields = parameter_fields(_module_tree())
    bound = {}
    for name, element in ui_widgets().items():
        parameter = _property(element, "SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in fields, f"{name}: SlicerParameterName {parameter!r} is not a parameter-node field"
        assert element.get("class") in BINDABLE[fields[parameter]], (
            f"{name}: a {element.get('class')} cannot be bound to {parameter} ({fields[parameter]})")
        assert parameter not in bound, f"{parameter} is bound to both {bound[parameter]} and {name}"
        bound[parameter] = name
        # The property survives loading as a dynamic property, which is what connectGui looks for.
        assert loaded_ui.findChild(QObject, name).property("SlicerParameterName") == parameter
    assert {"leVolume", "realDesVolume", "lesionSegmentation", "modelPath", "ringWidthMm", "epochs",
            "outputFolder"} <= set(bound), f"main fields left unbound: {sorted(set(fields) - set(bound))}"


def test_mrml_widgets_receive_the_scene():
    """Every MRML widget gets setMRMLScene from the top-level mrmlSceneChanged (else its list stays empty)."""
    root = ET.parse(UI_FILE).getroot()
    needing = {name for name, w in ui_widgets().items() if w.get("class") in MRML_WIDGET_CLASSES}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("sender") == "VirtualContrast"
                 and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert needing, "no MRML widgets found in the .ui"
    assert needing <= connected, f"MRML widgets without the scene: {sorted(needing - connected)}"
    assert connected <= set(ui_widgets()), f"connections to unknown widgets: {sorted(connected - set(ui_widgets()))}"


def test_custom_widgets_are_declared():
    """Every non-Qt class used in the .ui is declared in <customwidgets>, with a base class Qt knows."""
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class"): c.findtext("extends") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    custom = {cls for cls in used if not cls.startswith("Q")}
    assert custom <= set(declared), f"undeclared custom widgets: {sorted(custom - set(declared))}"
    for cls, base in declared.items():
        seen = {cls}
        while base in declared:  # e.g. qSlicerMarkupsPlaceWidget -> qSlicerWidget -> QWidget
            assert base not in seen, f"cyclic <extends> at {cls}"
            seen.add(base)
            base = declared[base]
        assert base.startswith("Q"), f"{cls} extends {base}, which is neither Qt nor declared"


def test_model_path_remembers_recent_run_folders():
    """The model path line edit keeps its history in QSettings under VirtualContrast/RecentModels."""
    assert _property(ui_widgets()["modelPathLineEdit"], "settingKey") == "VirtualContrast/RecentModels"


# ---------------------------------------------------------------- (b) CMake lists match the files

def test_module_cmake_lists_every_script_and_resource():
    """MODULE_PYTHON_SCRIPTS = VirtualContrast.py + VirtualContrastLib/**.py; MODULE_PYTHON_RESOURCES = Resources/**."""
    cmake = MODULE_DIR / "CMakeLists.txt"
    scripts = cmake_list(cmake, "MODULE_PYTHON_SCRIPTS")
    resources = cmake_list(cmake, "MODULE_PYTHON_RESOURCES")
    assert len(scripts) == len(set(scripts)), "duplicate scripts in the module CMakeLists.txt"
    assert set(scripts) == files_under(MODULE_DIR, ".py", exclude=("Testing",)), (
        "module scripts on disk and in CMakeLists.txt differ: "
        f"{sorted(set(scripts) ^ files_under(MODULE_DIR, '.py', exclude=('Testing',)))}")
    on_disk = {f"Resources/{p}" for p in files_under(MODULE_DIR / "Resources")}
    assert set(resources) == on_disk, f"resources differ: {sorted(set(resources) ^ on_disk)}"
    text = re.sub(r"#[^\n]*", "", cmake.read_text(encoding="utf-8"))
    assert "slicerMacroBuildScriptedModule" in text
    assert re.search(r"if\(BUILD_TESTING\)\s*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text)


def test_engine_cmake_lists_every_engine_file():
    """The engine package is installed beside the module: every .py (and any data file) must be listed."""
    cmake = ENGINE_DIR / "CMakeLists.txt"
    scripts = cmake_list(cmake, "ENGINE_PYTHON_SCRIPTS")
    resources = cmake_list(cmake, "ENGINE_PYTHON_RESOURCES") if "ENGINE_PYTHON_RESOURCES" in cmake.read_text() else []
    on_disk = files_under(ENGINE_DIR)
    py = {p for p in on_disk if p.endswith(".py")}
    data = on_disk - py - {"CMakeLists.txt"}
    assert len(scripts) == len(set(scripts)), "duplicate scripts in the engine CMakeLists.txt"
    assert set(scripts) == py, f"engine scripts differ: {sorted(set(scripts) ^ py)}"
    assert set(resources) == data, f"engine data files differ: {sorted(set(resources) ^ data)}"


def test_extension_cmake_adds_module_and_engine():
    """The extension builds both folders and depends on SlicerPyTorch."""
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^\s*add_subdirectory\(VirtualContrast\)", text, re.M)
    assert re.search(r"^\s*add_subdirectory\(VirtualContrastTraining\)", text, re.M)
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"?PyTorch"?\)', text)


# ---------------------------------------------------------------- (c) the module compiles

def test_module_script_compiles(tmp_path):
    """A syntax error would keep the module out of Slicer's module list without a word in the GUI."""
    py_compile.compile(str(MODULE_SCRIPT), cfile=str(tmp_path / "VirtualContrast.pyc"), doraise=True)
