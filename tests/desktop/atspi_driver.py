#!/usr/bin/python3
"""Drives a desktop program the way a screen reader does, over AT-SPI, for
tests/desktop_dialog.rs: one JSON request per line on stdin, one JSON answer per line on
stdout. It only reads the accessibility tree and invokes actions; it never looks at pixels.

Requests:
  {"op": "windows"}                        -> {"ok": true, "windows": ["Smartcard log-in", ...]}
  {"op": "dump", "window": W}              -> {"ok": true, "nodes": [{role, name, description,
                                               text, visible, sensitive, focused, checked}]}
  {"op": "press", "window": W, "name": N}  -> the first visible node named N does its
                                               first action (a button's "click")
  {"op": "focus", "window": W, "name": N}  -> keyboard focus to the node named N
  {"op": "text_changes"}                   -> {"ok": true, "changes": [{kind, role, text}]}:
                                               every object:text-changed event any program
                                               sent since the previous such request, as a
                                               listener on the accessibility bus receives it
Errors: {"ok": false, "error": "..."} naming what was not found.

An object that went away between finding it and using it (GTK replaces accessibles as it
likes; libatspi then answers "The application no longer exists") is looked up again, as a
screen reader does, up to three times.
"""

import json
import sys
import time

import gi

gi.require_version("Atspi", "2.0")
from gi.repository import Atspi, GLib  # noqa: E402

TEXT_CHANGES = []


def on_text_changed(event):
    try:
        role = event.source.get_role_name() if event.source is not None else ""
    except Exception:  # the source went away before we asked
        role = ""
    text = event.any_data if isinstance(event.any_data, str) else ""
    TEXT_CHANGES.append({"kind": event.type, "role": role, "text": text})


LISTENER = Atspi.EventListener.new(on_text_changed)
LISTENER.register("object:text-changed")


def dispatch_events(seconds):
    """Lets libatspi deliver the events that arrived (it does so from the GLib main loop)."""
    context = GLib.MainContext.default()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        while context.iteration(False):
            pass
        time.sleep(0.02)


def windows():
    desktop = Atspi.get_desktop(0)
    desktop.clear_cache()
    found = []
    for i in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(i)
        if app is None:
            continue
        for j in range(app.get_child_count()):
            window = app.get_child_at_index(j)
            if window is not None:
                found.append(window)
    return found


def window_named(name):
    for window in windows():
        try:
            if window.get_name() == name:
                return window
        except Exception:  # a window that went away while we looked
            continue
    return None


def states(node):
    s = node.get_state_set()
    return {
        # GTK 4 leaves hidden widgets out of the tree and marks the rest VISIBLE (SHOWING only
        # on the window itself, in 4.8).
        "visible": s.contains(Atspi.StateType.VISIBLE),
        "sensitive": s.contains(Atspi.StateType.SENSITIVE),
        "focused": s.contains(Atspi.StateType.FOCUSED),
        "checked": s.contains(Atspi.StateType.CHECKED),
    }


def text_of(node):
    if "Text" not in node.get_interfaces():
        return None
    return Atspi.Text.get_text(node, 0, Atspi.Text.get_character_count(node))


def walk(node, out):
    entry = {
        "role": node.get_role_name(),
        "name": node.get_name() or "",
        "description": node.get_description() or "",
        "text": text_of(node),
    }
    entry.update(states(node))
    out.append((entry, node))
    for i in range(node.get_child_count()):
        child = node.get_child_at_index(i)
        if child is not None:
            walk(child, out)


def nodes_of(window_name):
    window = window_named(window_name)
    if window is None:
        raise LookupError(f"no window named {window_name!r}; open: {[w.get_name() for w in windows()]}")
    out = []
    walk(window, out)
    return out


def named(window_name, name):
    for entry, node in nodes_of(window_name):
        if entry["name"] == name and entry["visible"]:
            return node
    raise LookupError(f"no visible control named {name!r} in {window_name!r}")


def answer(request):
    op = request.get("op")
    if op == "windows":
        return {"windows": [w.get_name() for w in windows()]}
    if op == "dump":
        return {"nodes": [entry for entry, _ in nodes_of(request["window"])]}
    if op == "press":
        node = named(request["window"], request["name"])
        if node.get_n_actions() < 1:
            raise LookupError(f"{request['name']!r} has no action")
        node.do_action(0)
        return {}
    if op == "text_changes":
        dispatch_events(0.5)
        changes = list(TEXT_CHANGES)
        TEXT_CHANGES.clear()
        return {"changes": changes}
    if op == "focus":
        node = named(request["window"], request["name"])
        if "Component" not in node.get_interfaces() or not Atspi.Component.grab_focus(node):
            raise LookupError(f"{request['name']!r} cannot take the focus")
        return {}
    raise ValueError(f"unknown op {op!r}")


def gone(error):
    return isinstance(error, GLib.Error) and "no longer exists" in str(error)


def main():
    for line in sys.stdin:
        request = json.loads(line)
        for attempt in range(4):
            dispatch_events(0)
            try:
                reply = answer(request)
                reply["ok"] = True
                break
            except Exception as e:  # every failure goes back to the test, named
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                if not gone(e) or attempt == 3:
                    break
                print(f"atspi_driver: {e}; looking again", file=sys.stderr)
                Atspi.get_desktop(0).clear_cache()
                time.sleep(0.2)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
