"""One registry for every kind of component (algorithms, models, tasks, rewards) and one plugin mechanism.

A :class:`Registry` maps names to components, each registered with its **options dataclass**: the options a config
may give it (``algorithm.options``, ``model.options``, ``task.options``), with their types and defaults.
:meth:`Registry.parse_options` turns a config's mapping into that dataclass, checking names, types and the
dataclass's own ``__post_init__`` checks, so a typo or a non-numeric value stops at config load, before any data or
model is built.

Plugins.  A component outside seqlab registers itself when its module is imported.  The modules imported on a
registry's first lookup are seqlab's own (:data:`BUILTIN_MODULES`), those named in ``$SEQLAB_PLUGINS``
(comma-separated; ``seqlab --plugin MODULE`` adds to it, so ``seqlab compare`` subprocesses and ``torchrun``
workers import them too) and those of the ``seqlab.plugins`` entry-point group of installed packages.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from seqlab.config import ConfigError, check_type, did_you_mean

T = TypeVar("T")

#: environment variable naming plugin modules (comma-separated), inherited by subprocesses
PLUGIN_ENV = "SEQLAB_PLUGINS"
#: entry-point group of installed packages that register seqlab components
ENTRY_POINT_GROUP = "seqlab.plugins"
#: seqlab's own modules that register components; one whose optional dependency is missing is skipped
BUILTIN_MODULES = (
    "seqlab.rewards",
    "seqlab.models",
    "seqlab.models.captioning",
    "seqlab.nat.models",
    "seqlab.hf.model",
    "seqlab.algorithms",
    "seqlab.nat.algorithms",
    "seqlab.credit.algorithms",
    "seqlab.tasks.builtin",
    "seqlab.tasks.summarization",
    "seqlab.tasks.captioning",
    "seqlab.tasks.hf",
)

_imported: set[str] = set()
#: built-in modules skipped for a missing dependency: module -> the missing package
_skipped: dict[str, str] = {}
_loading = False
_loaded_for: str | None = None  # $SEQLAB_PLUGINS at the last complete load
_named_loaded_for: str | None = None  # ... at the last load of the plugin modules alone
_lock = threading.RLock()  # another thread waits for a load in progress; the loading thread may re-enter


def plugin_modules() -> list[str]:
    """The modules named in ``$SEQLAB_PLUGINS``."""
    return [m.strip() for m in os.environ.get(PLUGIN_ENV, "").replace(";", ",").split(",") if m.strip()]


def name_plugins(modules: list[str]) -> None:
    """Add ``modules`` to ``$SEQLAB_PLUGINS``: imported on the next registry lookup, here and in the subprocesses
    this process starts (``seqlab compare`` runs, ``torchrun`` workers inherit the environment)."""
    names = plugin_modules() + [m for m in modules if m not in plugin_modules()]
    os.environ[PLUGIN_ENV] = ",".join(names)


def add_plugins(modules: list[str]) -> None:
    """Name ``modules`` in ``$SEQLAB_PLUGINS`` and import them now."""
    name_plugins(modules)
    load_plugins()


def _import_builtin(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:  # the module itself, or a package it needs, is not installed
        if not e.name or not (module.startswith(e.name) or e.name.split(".")[0] != "seqlab"):
            raise
        if not module.startswith(e.name):
            _skipped[module] = e.name


def load_plugins() -> None:
    """Import every module that registers components (once each; re-entrant calls during an import return)."""
    global _loading, _loaded_for
    if _loaded_for == os.environ.get(PLUGIN_ENV, ""):  # everything imported, no plugin named since
        return
    with _lock:
        if _loading:
            return
        _loading = True
        try:
            _load_all()
            _loaded_for = os.environ.get(PLUGIN_ENV, "")
        finally:
            _loading = False


def _load_all() -> None:
    for module in BUILTIN_MODULES:
        if module not in _imported:
            _import_builtin(module)
            _imported.add(module)
    _load_plugin_modules()
    _load_entry_points()


def _load_plugin_modules() -> None:
    for module in plugin_modules():
        if module not in _imported:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise ConfigError(
                    f"plugin module {module!r} (--plugin / ${PLUGIN_ENV}) could not be imported: {e}"
                ) from None
            _imported.add(module)


def load_named_plugins() -> None:
    """Import the plugin modules only ($SEQLAB_PLUGINS / ``--plugin`` and the ``seqlab.plugins`` entry points), not
    seqlab's own component modules."""
    global _named_loaded_for
    if _named_loaded_for == os.environ.get(PLUGIN_ENV, ""):
        return
    with _lock:
        _load_plugin_modules()
        _load_entry_points()
        _named_loaded_for = os.environ.get(PLUGIN_ENV, "")


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{ep.value}"
        if key in _imported:
            continue
        _imported.add(key)
        obj = ep.load()
        if callable(obj) and not isinstance(obj, types.ModuleType):
            obj()  # an entry point may name a function that registers


# --------------------------------------------------------------------------------------------- options
@dataclass
class NoOptions:
    """A component without options."""


def option_fields(options_cls: type, exclude: tuple[str, ...] = ()) -> dict[str, tuple[dataclasses.Field, Any]]:
    """The options of a dataclass by name: (field, resolved type)."""
    hints = typing.get_type_hints(options_cls)
    return {
        f.name: (f, hints.get(f.name, Any)) for f in dataclasses.fields(options_cls) if f.init and f.name not in exclude
    }


def parse_options(
    options_cls: type,
    given: Any,
    where: str,
    owner: str,
    error: type[Exception] = ConfigError,
    exclude: tuple[str, ...] = (),
    construct: bool = True,
    hint: str = "",
) -> Any:
    """``given`` (a mapping, or already an ``options_cls``) as an ``options_cls`` instance: unknown names, wrong
    types and the dataclass's own checks (``__post_init__``) raise ``error`` with one line naming ``where``
    (e.g. ``algorithm.options``) and the ``owner`` (e.g. ``algorithm 'raml'``).  ``construct=False`` only checks
    names and types (returns the checked mapping)."""
    if isinstance(given, options_cls):
        return given
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise error(f"{where} must be a mapping of option names to values, got {given!r}")
    fields = option_fields(options_cls, exclude)
    checked: dict[str, Any] = {}
    try:
        for key, value in given.items():
            if key not in fields:
                suggestion = did_you_mean(key, fields) or f" (options: {', '.join(sorted(fields)) or 'none'})"
                raise ConfigError(f"{where}.{key}: unknown option {key!r} of {owner}{suggestion}{hint}")
            checked[key] = check_type(value, fields[key][1], f"{where}.{key}")
        if not construct:
            return checked
        missing = [
            n
            for n, (f, _) in fields.items()
            if n not in checked and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(
                f"{where}.{missing[0]}: {owner}: option {missing[0]!r} is required (set {where}.{missing[0]})"
            )
        return options_cls(**checked)
    except ConfigError as e:
        raise error(str(e)) from None
    except (ValueError, TypeError) as e:  # the dataclass's own checks
        raise error(f"{where}: {owner}: {e}") from None


# --------------------------------------------------------------------------------------------- registry
def _identity(obj: Any) -> Any:
    """What makes two registrations the same (a module imported twice re-registers equal objects)."""
    name = getattr(obj, "__qualname__", None)
    return (getattr(obj, "__module__", None), name) if name else id(obj)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its name, the object (a class or function) and its options dataclass."""

    name: str
    obj: T
    options: type | None  # None: options are passed on unchecked (a mapping the component checks itself)


class Registry(Mapping[str, T]):
    """Components of one ``kind`` by name, each with its options dataclass.  Reading it (``names()``, ``in``,
    ``[name]``, iteration) first imports the modules that register components: ``loader``, by default
    :func:`load_plugins` (seqlab's own and the plugins); :func:`load_named_plugins` for a registry whose built-in
    entries are registered where it is defined (the CLI's sub-commands, which must not import torch)."""

    def __init__(self, kind: str, noun: str | None = None, loader: Callable[[], None] | None = None):
        self.kind = kind
        self.noun = noun or kind  # in messages ("unknown model architecture 'x'")
        self._entries: dict[str, Entry[T]] = {}
        self._loader = loader or load_plugins

    # ---- registering
    def add(self, name: str, obj: T, options: type | None = None) -> T:
        """Register ``obj`` as ``name`` with its ``options`` dataclass (None: the options mapping is passed on
        unchecked; :class:`NoOptions`: none accepted).  Registering the same object again is a no-op; another
        object under a taken name is an error."""
        if options is not None and not dataclasses.is_dataclass(options):
            raise TypeError(f"{self.kind} {name!r}: options must be a dataclass, got {options!r}")
        old = self._entries.get(name)
        if old is not None and _identity(old.obj) != _identity(obj):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, options)
        return obj

    def register(self, name: str, options: type | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda obj: self.add(name, obj, options)

    def remove(self, name: str) -> T | None:
        """Unregister ``name`` (tests); returns its object, or None."""
        entry = self._entries.pop(name, None)
        return entry.obj if entry else None

    pop = remove

    # ---- reading
    def _all(self) -> dict[str, Entry[T]]:
        self._loader()
        return self._entries

    def entry(self, name: str) -> Entry[T]:
        entries = self._all()
        if name not in entries:
            skipped = "".join(f"; {m} was not loaded: package {p!r} is not installed" for m, p in _skipped.items())
            raise ConfigError(
                f"unknown {self.noun} {name!r}{did_you_mean(name, entries)} "
                f"({self.kind}s: {', '.join(sorted(entries))}){skipped}"
            )
        return entries[name]

    def names(self) -> list[str]:
        return sorted(self._all())

    def options(self, name: str) -> type | None:
        """The options dataclass of ``name`` (None: registered without one)."""
        return self.entry(name).options

    def option_names(self, name: str, exclude: tuple[str, ...] = ()) -> list[str] | None:
        """The names of ``name``'s options (None: registered without an options dataclass)."""
        options = self.options(name)
        return None if options is None else list(option_fields(options, exclude))

    def parse_options(
        self, name: str, given: Any, where: str | None = None, error: type[Exception] = ConfigError, **kwargs: Any
    ) -> Any:
        """``given`` as ``name``'s options dataclass (see :func:`parse_options`); a component registered without
        one gets ``given`` as it is."""
        options = self.options(name)
        if options is None:
            return dict(given or {})
        return parse_options(options, given, where or f"{self.kind}.options", f"{self.kind} {name!r}", error, **kwargs)

    def build(self, name: str, *args: Any, options: Any = None, error: type[Exception] = ConfigError) -> Any:
        """``obj(*args, parsed options)``: the component built with its checked options."""
        entry = self.entry(name)
        return entry.obj(*args, self.parse_options(name, options, error=error))  # type: ignore[operator]

    def __getitem__(self, name: str) -> T:
        return self._all()[name].obj

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._all()))

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
