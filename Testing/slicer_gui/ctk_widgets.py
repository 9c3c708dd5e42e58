"""Stand-ins for the CTK widgets the module's .ui uses, as the `ctk` module.

Each one does what the C++ class does where the module or Slicer's Python
depends on it (read from CTK's sources, Libs/Widgets/ctk*.cpp), nothing more:

- ctkCollapsibleButton / ctkCollapsibleGroupBox: `collapsed` hides the direct
  child widgets (also those added after the property was set, as the .ui does).
- ctkPathLineEdit: an editable history combo box and a browse button;
  `currentPath`, `filters`, `nameFilters`, `settingKey`; `currentPathChanged`
  only for acceptable input (CTK's validator: the name filters' extensions, else
  any non-empty text); the history lives in QSettings under
  "ctkPathLineEdit/<settingKey or objectName>", at most 5 entries, the newest first,
  and a new `settingKey` on an empty edit selects the newest entry.

Other ctk names that parameterNodeWrapper's GUI connectors test with `type(w) in
(...)` exist as classes that refuse to be built: nothing here uses them.
"""

from __future__ import annotations

import re

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Property, Signal

from .dialogs import ctkMessageBox
from .pythonqt import PythonQtObject, declareProperties, pythonQtClass

_DIRECT = QtCore.Qt.FindChildOption.FindDirectChildrenOnly


class _Collapsible:
    """`collapsed` shows or hides the direct child widgets, as CTK's collapsible containers do."""

    def _applyCollapsed(self, collapsed: bool) -> None:
        for child in self.findChildren(QtWidgets.QWidget, options=_DIRECT):
            child.setVisible(not collapsed)
        self.contentsCollapsed.emit(collapsed)

    def childEvent(self, event):
        super().childEvent(event)
        child = event.child()
        if event.type() == QtCore.QEvent.Type.ChildAdded and isinstance(child, QtWidgets.QWidget) \
                and self._isCollapsed():
            child.setVisible(False)

    def _isCollapsed(self) -> bool:
        return not QtWidgets.QAbstractButton.isChecked(self) if isinstance(self, QtWidgets.QAbstractButton) \
            else self.isCheckable() and not QtWidgets.QGroupBox.isChecked(self)


@declareProperties
class ctkCollapsibleButton(_Collapsible, PythonQtObject, QtWidgets.QAbstractButton):
    contentsCollapsed = Signal(bool)

    def __init__(self, parent=None):
        text = parent if isinstance(parent, str) else ""
        super().__init__(None if isinstance(parent, str) else parent)
        self.setText(text)
        self.setCheckable(True)
        self.setChecked(True)
        self.toggled.connect(lambda checked: self._applyCollapsed(not checked))

    collapsed = Property(bool, lambda self: self._isCollapsed(), lambda self, c: self.setChecked(not c))

    def paintEvent(self, event):  # QAbstractButton leaves painting to subclasses
        QtGui.QPainter(self).drawText(QtWidgets.QWidget.rect(self), QtCore.Qt.AlignmentFlag.AlignLeft,
                                      QtWidgets.QAbstractButton.text(self))


@declareProperties
class ctkCollapsibleGroupBox(_Collapsible, PythonQtObject, QtWidgets.QGroupBox):
    contentsCollapsed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setCheckable(True)
        self.setChecked(True)
        self.toggled.connect(lambda checked: self._applyCollapsed(not checked))

    collapsed = Property(bool, lambda self: self._isCollapsed(), lambda self, c: self.setChecked(not c))


@declareProperties
class ctkPathLineEdit(PythonQtObject, QtWidgets.QWidget):
    currentPathChanged = Signal(str)
    validInputChanged = Signal(bool)

    # ctkPathLineEdit::Filter (QDir::Filter values)
    Dirs, Files, Drives, NoSymLinks, Readable, Writable, Executable = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
    Hidden, System, AllDirs, NoDot, NoDotDot = 0x100, 0x200, 0x400, 0x2000, 0x4000
    AllEntries, NoDotAndDotDot = Dirs | Files | Drives, NoDot | NoDotDot
    MAX_HISTORY = 5

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._comboBox = pythonQtClass(QtWidgets.QComboBox)(self)
        self._comboBox.setEditable(True)
        self._comboBox.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self._browseButton = pythonQtClass(QtWidgets.QToolButton)(self)
        self._browseButton.setText("...")
        layout.addWidget(self._comboBox)
        layout.addWidget(self._browseButton)
        self._filters = self.AllEntries | self.NoDotAndDotDot | self.Readable | self.Executable
        self._nameFilters: list[str] = []
        self._settingKey = ""
        self._hasValidInput = False
        self._comboBox.lineEdit().textChanged.connect(self._updateHasValidInput)
        self._browseButton.clicked.connect(self.browse)

    # -- properties ------------------------------------------------------------------------------
    def _getCurrentPath(self) -> str:
        return self._comboBox.lineEdit().text()

    def setCurrentPath(self, path: str) -> None:
        self._comboBox.lineEdit().setText(path)

    currentPath = Property(str, _getCurrentPath, setCurrentPath, user=True)

    def _setFilters(self, filters) -> None:
        self._filters = int(filters)

    filters = Property(int, lambda self: self._filters, _setFilters)

    def _setNameFilters(self, nameFilters) -> None:
        self._nameFilters = list(nameFilters)

    nameFilters = Property("QStringList", lambda self: self._nameFilters, _setNameFilters)

    def _setSettingKey(self, key: str) -> None:
        self._settingKey = key
        self.retrieveHistory()

    settingKey = Property(str, lambda self: self._settingKey, _setSettingKey)

    def comboBox(self) -> QtWidgets.QComboBox:
        return self._comboBox

    # -- behaviour -------------------------------------------------------------------------------
    def _acceptable(self, text: str) -> bool:
        """CTK's validator: the name filters' extensions as `.*\\.ext?$`, or any non-empty text."""
        extensions = [m.group(1) for f in self._nameFilters for m in re.finditer(r"\*\.(\w+)", f)]
        pattern = "|".join(rf".*\.{e}?" for e in extensions) or ".+"
        return re.fullmatch(pattern, text) is not None

    def _updateHasValidInput(self, text: str) -> None:
        wasValid, self._hasValidInput = self._hasValidInput, self._acceptable(text)
        if self._hasValidInput:
            self.currentPathChanged.emit(text)
        if wasValid != self._hasValidInput:
            self.validInputChanged.emit(self._hasValidInput)

    def _historyKey(self) -> str:
        return "ctkPathLineEdit/" + (self._settingKey or QtCore.QObject.objectName(self))

    def retrieveHistory(self) -> None:
        path = self._getCurrentPath()
        wasBlocking = self.blockSignals(True)
        self._comboBox.clear()
        history = QtCore.QSettings().value(self._historyKey()) or []
        self._comboBox.addItems(([history] if isinstance(history, str) else list(history))[:self.MAX_HISTORY])
        if not path:
            self.blockSignals(wasBlocking)
            self._comboBox.setCurrentIndex(0)
        else:
            self.setCurrentPath(path)
            self.blockSignals(wasBlocking)

    def addCurrentPathToHistory(self) -> None:
        path = self._getCurrentPath()
        if not path:
            return
        settings = QtCore.QSettings()
        history = settings.value(self._historyKey()) or []
        history = [p for p in ([history] if isinstance(history, str) else history) if p != path]
        settings.setValue(self._historyKey(), [path] + history)
        index = self._comboBox.findText(path)
        if index >= 0:
            self._comboBox.removeItem(index)
        while self._comboBox.count >= self.MAX_HISTORY:
            self._comboBox.removeItem(self._comboBox.count - 1)
        self._comboBox.insertItem(0, path)
        self._comboBox.setCurrentIndex(0)

    def browse(self) -> None:
        import qt

        start = self._getCurrentPath()
        if self._filters & self.Files:
            getter = qt.QFileDialog.getSaveFileName if self._filters & self.Writable else qt.QFileDialog.getOpenFileName
            path = getter(self, "Select a file", start, ";;".join(self._nameFilters))
        else:
            path = qt.QFileDialog.getExistingDirectory(self, "Select a directory...", start)
        if path:
            self.setCurrentPath(path)


def _notEmulated(name: str) -> type:
    def refuse(self, *args, **kwargs):
        raise NotImplementedError(f"{name} is not emulated by the test harness (the module's .ui does not use it)")

    return type(name, (pythonQtClass(QtWidgets.QWidget),), {"__init__": refuse, "__module__": "ctk"})


#: What the `ctk` module holds.
CLASSES = {cls.__name__: cls for cls in (ctkCollapsibleButton, ctkCollapsibleGroupBox, ctkPathLineEdit, ctkMessageBox)}
CLASSES.update({name: _notEmulated(name) for name in (
    "ctkCheckBox", "ctkCheckablePushButton", "ctkComboBox", "ctkSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
    "ctkRangeWidget", "ctkDoubleRangeSlider", "ctkDirectoryButton", "ctkColorPickerButton")})
