"""PythonQt's semantics on PySide6, only where Slicer's Python and the module rely on them.

Slicer runs Python through PythonQt, where a Qt property is a Python attribute
(`button.enabled = False`, `spin.value`, `combo.currentText`) and a signal can be
connected by its C++ signature (`combo.connect("activated(int)", f)`). PySide6
has neither: there `button.enabled = False` silently creates a Python attribute
and the button stays enabled. So every class the `qt` module hands out is a thin
subclass of the PySide6 class with

- one descriptor per Qt property of the class's meta-object (a read on the class
  itself returns PySide's attribute, so `qt.QTimer.singleShot(...)` still works);
- `connect`/`disconnect` that accept a C++ signature string;
- `name` as PythonQt's alias of objectName (slicer.util.childWidgetVariables
  names `self.ui.<x>` after it).

`type(widget) == qt.QSpinBox` holds for what the .ui loader builds, because the
loader (QUiLoader below) creates exactly these classes; parameterNodeWrapper's GUI
connectors test the type that way. Objects Qt creates internally (a combo box's
line edit) stay plain PySide objects: Slicer's code never reaches them.

The loader also makes the .ui's <connections> itself: Qt's form builder connects
by C++ signature, which a signal declared in Python (`mrmlSceneChanged(PyObject)`)
never matches.
"""

from __future__ import annotations

import re
import threading
import weakref
import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

#: Virtual getters that C++ layouts call all the time; as properties they would only cost a round trip.
_NOT_ATTRIBUTES = {"sizeHint", "minimumSizeHint"}
_reading = threading.local()


class QtPropertyAttribute:
    """A Qt property read and written as an attribute, as PythonQt does (`label.text = "x"`)."""

    def __init__(self, name: str, base: type):
        self.name, self.base = name, base

    def __get__(self, obj, cls=None):
        if obj is None:  # class access: PySide's own attribute (a static method such as QTimer.singleShot)
            return getattr(self.base, self.name, self)
        # A property whose getter is a C++ virtual (QProgressBar::text) makes PySide look up `text` on the
        # Python object to find an override: answer that nested lookup with PySide's method.
        active = _reading.__dict__.setdefault("keys", set())
        key = (id(obj), self.name)
        if key in active:
            return getattr(self.base, self.name).__get__(obj, cls)
        active.add(key)
        try:
            return obj.property(self.name)
        finally:
            active.discard(key)

    def __set__(self, obj, value):
        if not obj.setProperty(self.name, value):
            raise AttributeError(f"{type(obj).__name__}.{self.name} could not be set to {value!r}")


def signalOf(obj, signature: str):
    """The signal instance for a C++ signature such as 'clicked(bool)' or 'moduleAboutToBeUnloaded(QString)'."""
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", signature)
    if not match:
        raise ValueError(f"not a signal signature: {signature!r}")
    name, arguments = match.group(1), match.group(2).replace(" ", "")
    signal = getattr(obj, name)
    if arguments:
        try:  # an overloaded signal (clicked() / clicked(bool)): the overload the signature names
            return signal[arguments]
        except (KeyError, IndexError, TypeError):
            pass
    return signal


class PythonQtObject:
    """What every class of the `qt`, `ctk` and `slicer.q*` stand-ins adds to PySide6's."""

    def __getattribute__(self, name):
        # PySide's QObject answers `connect` / `disconnect` with its own methods before the class's.
        if name in ("connect", "disconnect"):
            return getattr(PythonQtObject, name).__get__(self)
        return super().__getattribute__(name)

    @property
    def name(self):
        return QtCore.QObject.objectName(self)

    @name.setter
    def name(self, value):
        QtCore.QObject.setObjectName(self, value)

    def connect(self, signal, slot=None, *more):
        if isinstance(signal, str):  # PythonQt: obj.connect('clicked(bool)', callable)
            signalOf(self, signal).connect(slot)
            return True
        return QtCore.QObject.connect(self, signal, slot, *more)

    def disconnect(self, signal=None, slot=None, *more):
        if isinstance(signal, str):
            try:
                signalOf(self, signal).disconnect(slot)
            except (RuntimeError, TypeError):  # PythonQt returns False for a connection that does not exist
                return False
            return True
        return QtCore.QObject.disconnect(self, *(a for a in (signal, slot, *more) if a is not None))


def propertyAttributes(base: type) -> dict:
    """One QtPropertyAttribute per property of the class's meta-object (inherited ones included)."""
    metaObject = base.staticMetaObject
    names = {metaObject.property(i).name() for i in range(metaObject.propertyCount())}
    return {name: QtPropertyAttribute(name, base) for name in names - _NOT_ATTRIBUTES}


_classes: dict[type, type] = {}


def pythonQtClass(base: type) -> type:
    """The PythonQt-flavoured subclass of a PySide6 QObject class (one per class, so type checks hold)."""
    if base not in _classes:
        namespace = propertyAttributes(base)
        namespace.update(__module__="qt", __doc__=f"{base.__name__} with PythonQt attribute semantics.")
        _classes[base] = type(base.__name__, (PythonQtObject, base), namespace)
    return _classes[base]


def declareProperties(cls: type) -> type:
    """Class decorator for stand-ins written in Python: their C++ base's properties as attributes too.

    Properties the stand-in declares itself (PySide6 `Property`) already behave as attributes.
    """
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("PySide6."):
            for name, attribute in propertyAttributes(base).items():
                if name not in cls.__dict__:
                    setattr(cls, name, attribute)
            break
    return cls


#: Timers made through qt.QTimer: the harness checks that none is left running.
createdTimers: weakref.WeakSet = weakref.WeakSet()


class QTimer(pythonQtClass(QtCore.QTimer)):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        createdTimers.add(self)


class QMenu(pythonQtClass(QtWidgets.QMenu)):
    """PythonQt turns an argument it cannot convert to QWidget* into the QString `title` (str(obj)):
    Slicer's developer section builds `qt.QMenu(self)` with its Python widget object."""

    def __init__(self, *args):
        if args and not isinstance(args[0], (str, QtWidgets.QWidget)):
            args = (str(args[0]), *args[1:])
        super().__init__(*args)


class QUiLoader(pythonQtClass(QtUiTools.QUiLoader)):
    """Builds the .ui's widgets from the `qt` module's classes and the registered stand-ins."""

    #: class name in the .ui -> class; filled by the ctk / slicer stand-in modules
    customClasses: dict[str, type] = {}

    def createWidget(self, className, parent=None, name=""):
        cls = self.customClasses.get(className) or _qtClass(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def createLayout(self, className, parent=None, name=""):
        cls = _qtClass(className)
        if cls is None:
            return super().createLayout(className, parent, name)
        layout = cls()
        layout.setObjectName(name)
        if isinstance(parent, QtWidgets.QWidget) and parent.layout() is None:
            parent.setLayout(layout)
        return layout

    def load(self, device, parentWidget=None):
        """Load the form without its <connections>, then connect them by signal and slot name."""
        root = ET.fromstring(bytes(device.readAll()))
        self._resolveCustomFlags(root)
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        buffer = QtCore.QBuffer()
        buffer.setData(ET.tostring(root, encoding="utf-8"))
        buffer.open(QtCore.QIODevice.ReadOnly)
        widget = super().load(buffer, parentWidget)
        for connection in [] if connections is None else connections.findall("connection"):
            sender = _byName(widget, connection.findtext("sender"))
            receiver = _byName(widget, connection.findtext("receiver"))
            slotName = connection.findtext("slot").split("(")[0]
            signalOf(sender, connection.findtext("signal")).connect(getattr(receiver, slotName))
        return widget


    def _resolveCustomFlags(self, root) -> None:
        """`<set>ctkPathLineEdit::Files|ctkPathLineEdit::Readable</set>` names a stand-in's constants, which
        Qt's form builder cannot read (they are not C++ enums): write them as the number they stand for."""
        for element in root.iter():
            if element.tag in ("set", "enum") and "::" in (element.text or ""):
                values = [name.split("::") for name in element.text.split("|")]
                classes = {self.customClasses.get(cls) for cls, _ in values}
                if None not in classes:
                    number = 0
                    for cls, name in values:
                        number |= int(getattr(self.customClasses[cls], name))
                    element.tag, element.text = "number", str(number)


def _byName(root, name):
    found = root if QtCore.QObject.objectName(root) == name else root.findChild(QtCore.QObject, name)
    if found is None:
        raise RuntimeError(f".ui connection names {name!r}, which the form does not have")
    return found


def _qtClass(className: str):
    for module in (QtWidgets, QtGui, QtCore):
        cls = getattr(module, className, None)
        if isinstance(cls, type) and issubclass(cls, QtCore.QObject):
            import qt  # the module object the harness registered (overrides such as QMessageBox live there)

            return getattr(qt, className)
    return None
