"""Message boxes and file dialogs are recorded and answered, never shown.

Opening a URL (QDesktopServices.openUrl: a web browser, a file manager) is
recorded the same way, as kind "url".

Slicer's errorDisplay / warningDisplay / infoDisplay / confirmOkCancelDisplay /
confirmYesNoDisplay all end in `ctk.ctkMessageBox(...).exec_()` (slicer.app is
not in testing mode here, so util.py takes its real path), and the module asks
for file names with `qt.QFileDialog.get...`. Those classes are replaced by the
ones below, which append a `Dialog` to `dialogs.current.shown` and answer from
the queue the test fills with `expect()`. A dialog nobody expected is answered
with Cancel (or an empty path) and fails the test at its end, with its text.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from PySide6 import QtCore, QtGui, QtWidgets

from .pythonqt import pythonQtClass

QMessageBoxBase = pythonQtClass(QtWidgets.QMessageBox)
StandardButton = QtWidgets.QMessageBox.StandardButton
_KINDS = {QtWidgets.QMessageBox.Icon.Critical: "error", QtWidgets.QMessageBox.Icon.Warning: "warning",
          QtWidgets.QMessageBox.Icon.Information: "info", QtWidgets.QMessageBox.Icon.Question: "question"}


@dataclass
class Dialog:
    kind: str            # error | warning | info | question | message | file | url
    text: str
    title: str = ""
    detail: str = ""     # detailed text of a message box; method, folder and filter of a file dialog
    answer: object = None


@dataclass
class Dialogs:
    """What the code under test showed (`shown`) and the answers queued for it (`expect`)."""

    shown: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    _queue: deque = field(default_factory=deque)

    def expect(self, kind: str, match: str = "", answer=None) -> None:
        """The next dialog is of this kind, its text (or detail) matches the regex, and gets this answer.

        Answers: a file path for 'file'; True / False (OK or Yes / Cancel or No) or a
        qt.QMessageBox button for 'question'; message boxes default to OK.
        """
        self._queue.append((kind, match, answer))

    def of(self, kind: str) -> list[Dialog]:
        return [d for d in self.shown if d.kind == kind]

    def respond(self, dialog: Dialog, default):
        self.shown.append(dialog)
        if self._queue:
            kind, match, answer = self._queue[0]
            if kind == dialog.kind and re.search(match, f"{dialog.text}\n{dialog.detail}", re.S):
                self._queue.popleft()
                dialog.answer = default if answer is None else answer
                return dialog.answer
        self.unexpected.append(dialog)
        dialog.answer = default
        return default

    def problems(self) -> list[str]:
        """Unexpected dialogs and expected ones that never came: the harness fails the test with these."""
        return ([f"unexpected {d.kind} dialog: {d.text!r}" for d in self.unexpected]
                + [f"expected {kind} dialog matching {match!r} never came" for kind, match, _ in self._queue])


#: The recorder of the running test (the harness replaces it for each test).
current = Dialogs()


def _button(answer, buttons: int):
    """True / False -> the affirmative / negative button the box offers."""
    if isinstance(answer, bool):
        order = ((StandardButton.Ok, StandardButton.Yes) if answer else (StandardButton.Cancel, StandardButton.No))
        for button in order:
            if buttons & button.value:
                return button
        return order[0]
    return answer


class QMessageBox(QMessageBoxBase):
    """A message box whose exec() records it and returns the queued answer."""

    def exec(self):
        kind = _KINDS.get(self.icon, "message")
        negative = _button(False, int(self.standardButtons))
        dialog = Dialog(kind, self.text, self.windowTitle, self.detailedText or "")
        default = negative if kind == "question" else StandardButton.Ok
        return _button(current.respond(dialog, default), int(self.standardButtons))

    exec_ = exec

    @staticmethod
    def _static(icon, parent, title, text, buttons=StandardButton.Ok, *args):
        box = QMessageBox(parent)
        box.icon, box.windowTitle, box.text, box.standardButtons = icon, title, text, buttons
        try:
            return box.exec()
        finally:
            box.deleteLater()

    @staticmethod
    def critical(parent, title, text, *args):
        return QMessageBox._static(QtWidgets.QMessageBox.Icon.Critical, parent, title, text, *args)

    @staticmethod
    def warning(parent, title, text, *args):
        return QMessageBox._static(QtWidgets.QMessageBox.Icon.Warning, parent, title, text, *args)

    @staticmethod
    def information(parent, title, text, *args):
        return QMessageBox._static(QtWidgets.QMessageBox.Icon.Information, parent, title, text, *args)

    @staticmethod
    def question(parent, title, text, buttons=StandardButton.Yes | StandardButton.No, *args):
        return QMessageBox._static(QtWidgets.QMessageBox.Icon.Question, parent, title, text, buttons)


class ctkMessageBox(QMessageBox):
    """CTK's message box adds a "don't show again" check box, which Slicer's messageBox() may configure."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._settingKey = ""

    def _getKey(self):
        return self._settingKey

    def _setKey(self, key):
        self._settingKey = key

    dontShowAgainSettingsKey = QtCore.Property(str, _getKey, _setKey)


class QFileDialog(pythonQtClass(QtWidgets.QFileDialog)):
    """File dialogs answer from the queue; PythonQt returns a plain path (PySide a (path, filter) tuple)."""

    @staticmethod
    def _ask(method, parent=None, caption="", directory="", filter="", *args, **kwargs):
        dialog = Dialog("file", caption, detail=f"{method} directory={directory!r} filter={filter!r}")
        return current.respond(dialog, [] if method == "getOpenFileNames" else "")

    @staticmethod
    def getOpenFileName(*args, **kwargs):
        return QFileDialog._ask("getOpenFileName", *args, **kwargs)

    @staticmethod
    def getOpenFileNames(*args, **kwargs):
        return QFileDialog._ask("getOpenFileNames", *args, **kwargs)

    @staticmethod
    def getSaveFileName(*args, **kwargs):
        return QFileDialog._ask("getSaveFileName", *args, **kwargs)

    @staticmethod
    def getExistingDirectory(parent=None, caption="", directory="", *args, **kwargs):
        return QFileDialog._ask("getExistingDirectory", parent, caption, directory)

    def exec(self):
        raise NotImplementedError("a QFileDialog opened with exec() is not recorded yet; use the static getters")

    exec_ = exec


class QDesktopServices(QtGui.QDesktopServices):
    """openUrl would start a browser or a file manager: recorded as a "url" dialog (answer: True)."""

    @staticmethod
    def openUrl(url) -> bool:
        return bool(current.respond(Dialog("url", url.toString() if hasattr(url, "toString") else str(url)), True))
