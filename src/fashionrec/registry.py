"""One registry class for every kind of thing a user adds: training objectives, dataset formats,
run kinds, metric-learning losses (timm's ``register_model``, done once).

A registry is filled by ``@registry.register`` in the modules of its package: on first use it
imports every module of that package (so adding a loss, a format or an objective is one new
file, with no list to edit) and the plugins, modules outside the toolkit named in the
``FASHIONREC_PLUGINS`` environment variable (comma-separated) or installed under the
``fashionrec.plugins`` entry-point group (``pip install`` a package that declares one). The
modules are named by string, so nothing below the stages imports the stages: ``runs.py`` finds
the metric-learning run kind without knowing metric learning exists.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points

from .errors import UserError

PLUGINS_ENV = "FASHIONREC_PLUGINS"
PLUGINS_GROUP = "fashionrec.plugins"
_plugins_loaded: set[str] = set()
_entry_points_loaded = False


def load_plugins() -> None:
    """Import the modules ``FASHIONREC_PLUGINS`` names and the ``fashionrec.plugins`` entry points (each
    once); a module that cannot be imported is a one-line error naming it."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        if name in _plugins_loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"{PLUGINS_ENV}: cannot import plugin module {name!r} ({e})") from None
        except Exception as e:  # noqa: BLE001 - the plugin's own bug (a name registered twice...): its author's to fix
            raise UserError(f"{PLUGINS_ENV}: plugin module {name!r} failed while importing: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        _plugins_loaded.add(name)  # after it imported: a failing one fails every time it is asked for
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group=PLUGINS_GROUP):
            ep.load()


class Registry:
    """Name -> thing, filled by ``@register`` in the modules of ``package`` (all imported on first use)
    and by plugins. ``what`` names the kind in messages (``loss``, ``dataset format``)."""

    def __init__(self, what: str, package: str | None = None):
        self.what, self.package = what, package
        self._things: dict[str, object] = {}
        self._discovered = False

    def register(self, thing=None, *, name: str | None = None):
        """Decorator (``@reg.register`` or ``@reg.register(name="x")``): ``thing`` under ``name`` or its
        ``name`` attribute. A second thing under a taken name is a bug: ValueError."""
        def add(obj):
            key = name or getattr(obj, "name", None)
            if not key or not isinstance(key, str):
                raise ValueError(f"{self.what} {obj!r}: give it a name")
            if key in self._things and self._things[key] is not obj:
                raise ValueError(f"{self.what} {key!r} is already registered ({self._things[key]!r})")
            self._things[key] = obj
            return obj

        return add(thing) if thing is not None else add

    def registered(self) -> dict:
        """What is registered so far, without importing anything (for use while a module registers)."""
        return dict(self._things)

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True
            if self.package:
                package = importlib.import_module(self.package)
                for info in pkgutil.iter_modules(package.__path__):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{self.package}.{info.name}")
        load_plugins()  # cheap when nothing new is named: a plugin named after the first use still counts

    def names(self, where: Callable[[object], bool] | None = None) -> tuple[str, ...]:
        self._discover()
        return tuple(n for n, t in self._things.items() if where is None or where(t))

    def items(self) -> Iterator[tuple[str, object]]:
        self._discover()
        return iter(list(self._things.items()))

    def get(self, name: str):
        """The thing registered as ``name``; unknown is a ValueError listing the names there are."""
        self._discover()
        if name not in self._things:
            raise ValueError(f"unknown {self.what} {name!r}; expected one of {', '.join(self._things)}")
        return self._things[name]

    def __contains__(self, name) -> bool:
        self._discover()
        return name in self._things
