"""Connections from napari events to a widget that end when the widget is closed.

A widget is closed when it receives a close event, when napari takes it out of its dock
(the dock's close button leaves it without a parent) or when Qt deletes it (its viewer
window closed). The connections hold the widget weakly, so they never keep a closed
widget alive, and a deleted widget is never called. :func:`when_closed` calls a
function at that moment (a widget cancels its running work).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject

if TYPE_CHECKING:
    import napari
    from napari.utils.events import EventEmitter
    from qtpy.QtWidgets import QWidget


def _disconnect(connections: list[tuple[EventEmitter, weakref.WeakMethod]], *_args: Any) -> None:
    """Disconnect every live callback of ``connections`` and forget them all."""
    for emitter, method in connections:
        callback = method()
        if callback is not None:
            emitter.disconnect(callback)
    connections.clear()


class _Subscription(QObject):
    """Watches one widget (as its child and event filter) and cuts its connections."""

    def __init__(
        self, widget: QWidget, emitters: Iterable[EventEmitter], callback: Callable[..., Any]
    ) -> None:
        super().__init__(widget)
        self.connections = [(emitter, weakref.WeakMethod(callback)) for emitter in emitters]
        for emitter, _ in self.connections:
            emitter.connect(callback)
        widget.installEventFilter(self)
        widget.destroyed.connect(partial(_disconnect, self.connections))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Cut the connections when the widget closes or leaves its dock."""
        kind = event.type()
        if kind == QEvent.Type.Close or (
            kind == QEvent.Type.ParentChange and watched.parent() is None
        ):
            _disconnect(self.connections)
        return False


def _call_once(pending: list[Callable[[], None]], *_args: Any) -> None:
    """Call and forget the callback of ``pending``, if it was not called yet."""
    if pending:
        pending.pop()()


class _CloseWatch(QObject):
    """Calls ``callback`` once when the widget it watches is closed or deleted."""

    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self.pending = [callback]  # emptied by the first call
        widget.installEventFilter(self)
        widget.destroyed.connect(partial(_call_once, self.pending))  # not a method: Qt
        # deletes this child before the widget's destroyed signal

    def _closed(self) -> None:
        _call_once(self.pending)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Call back when the widget closes or leaves its dock."""
        kind = event.type()
        if kind == QEvent.Type.Close or (
            kind == QEvent.Type.ParentChange and watched.parent() is None
        ):
            self._closed()
        return False


def when_closed(widget: QWidget, callback: Callable[[], None]) -> None:
    """Call ``callback`` once when ``widget`` is closed, leaves its dock or is deleted.

    Parameters
    ----------
    widget : QWidget
        The widget.
    callback : callable
        What to do then (it must not touch the widget's Qt children: they may be gone).
    """
    _CloseWatch(widget, callback)


def subscribe(
    widget: QWidget, emitters: Iterable[EventEmitter], callback: Callable[..., Any]
) -> None:
    """Call a widget's method on napari events until the widget is closed or deleted.

    Parameters
    ----------
    widget : QWidget
        The widget.
    emitters : iterable of EventEmitter
        The events to listen to.
    callback : bound method
        A method of ``widget`` (held weakly).
    """
    _Subscription(widget, emitters, callback)


def watch_layers(widget: QWidget, viewer: napari.Viewer, callback: Callable[..., Any]) -> None:
    """Call a widget's method when layers are added or removed, until it is closed.

    Parameters
    ----------
    widget : QWidget
        The widget.
    viewer : napari.Viewer
        The viewer whose layer list is watched.
    callback : bound method
        A method of ``widget`` (held weakly).
    """
    subscribe(widget, [viewer.layers.events.inserted, viewer.layers.events.removed], callback)
