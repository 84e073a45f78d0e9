"""One registry helper for every kind of named thing: name -> factory + description.

Every kind the library looks up by name (backbones, task models, distortions, codecs and codec
modifiers, loss terms, baselines) keeps a :class:`Registry`:

    BACKBONES = Registry("backbone", group="mlclipsim.backbones")
    BACKBONES.register("my-encoder", MyEncoder, description="a frozen encoder")
    BACKBONES.get("my-encoder").factory       # the registered object
    BACKBONES["my-encoder"]                   # the same, shorter
    BACKBONES.names()                         # sorted names

The rules are the same for every kind:

- registering a name that is taken raises ``ValueError`` unless ``overwrite=True``;
- an unknown name raises :class:`UnknownNameError` (a ``ValueError``) that lists the valid names
  and suggests the closest ones (``difflib``);
- another package adds entries by installing itself with an entry point in the kind's group
  (the ``group`` argument, e.g. ``mlclipsim.codecs``). In its ``pyproject.toml``::

      [project.entry-points."mlclipsim.codecs"]
      my-codec = "my_package.codecs:MyCodec"

  Entry points are loaded once, on the first lookup (``get``, ``in``, ``names``, iteration), not on
  import, so installing a plugin costs nothing until a name is looked up. The entry point's name is
  the registry name and the object it points to is the factory (its docstring's first line is the
  description). A plugin that fails to load or clashes with a registered name is skipped with a
  :class:`RuntimeWarning` naming it; it never breaks the built-in names.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

ENTRY_POINT_GROUPS = {
    "backbone": "mlclipsim.backbones",
    "task model": "mlclipsim.task_models",
    "distortion": "mlclipsim.distortions",
    "codec": "mlclipsim.codecs",
    "codec modifier": "mlclipsim.codec_modifiers",
    "distortion term": "mlclipsim.loss_terms",
    "baseline": "mlclipsim.baselines",
}
"""The entry-point group of each kind: install a package with an entry point there to add a name."""


class UnknownNameError(ValueError, LookupError):
    """A name that is not registered; the message lists the valid names and the closest ones."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name.

    Attributes:
        name: the registry key.
        factory: the registered object (a factory called with options, or for distortions the
            :class:`~mlclipsim.distortions.registry.Distortion` itself).
        description: one line saying what it is (may be empty).
        metadata: kind-specific facts, e.g. a task model's ``task``.
    """

    name: str
    factory: T
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


def first_doc_line(obj: Any) -> str:
    """The first non-empty line of ``obj``'s docstring, or ``""``."""
    for line in (getattr(obj, "__doc__", None) or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry(Generic[T]):
    """Names -> :class:`Entry` for one kind of thing, with an entry-point group for plugins.

    Args:
        kind: what the names name, in words (``"codec"``); used in messages.
        group: the entry-point group loaded on the first lookup (None: no plugins).
        unknown_message: the text of the unknown-name error, formatted with ``kind``, ``name``
            (the name asked for), ``names`` (the valid names joined by ``", "``) and ``quoted``
            (the same, each quoted); a did-you-mean sentence is appended when a name is close.
        register_entry_point: called as ``f(name, obj)`` to register an entry point's object, so that
            plugins pass the same checks as built-in names (default: :meth:`register` with the
            object's first docstring line as description).
    """

    def __init__(self, kind: str, group: str | None = None, *,
                 unknown_message: str = "Unknown {kind} {name!r}; valid names: {names}.",
                 register_entry_point: Callable[[str, Any], Any] | None = None) -> None:
        self.kind = kind
        self.group = group
        self.unknown_message = unknown_message
        self._register_entry_point = register_entry_point
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = group is None

    # ----------------------------------------------------------------------------- writing

    def register(self, name: str, factory: T, description: str = "", overwrite: bool = False,
                 **metadata: Any) -> T:
        """Register ``factory`` under ``name`` and return it; a taken name needs ``overwrite=True``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string, got {name!r}.")
        if name in self._entries and not overwrite:
            raise ValueError(f"A {self.kind} named {name!r} is already registered; pass overwrite=True to "
                             "replace it.")
        self._entries[name] = Entry(name, factory, description, MappingProxyType(dict(metadata)))
        return factory

    def unregister(self, name: str) -> None:
        """Remove ``name`` (UnknownNameError if it is not registered)."""
        self.get(name)
        del self._entries[name]

    __delitem__ = unregister

    # ----------------------------------------------------------------------------- reading

    def get(self, name: str) -> Entry[T]:
        """The entry of ``name``; :class:`UnknownNameError` listing the valid names otherwise."""
        self._load_plugins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name).factory

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        try:
            return name in self._entries
        except TypeError:  # unhashable
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        """Registered entries, sorted by name."""
        return [self._entries[name] for name in self.names()]

    def describe(self) -> dict[str, str]:
        """Name -> description, sorted by name."""
        return {entry.name: entry.description for entry in self.entries()}

    def unknown(self, name: Any, message: str | None = None, **fields: Any) -> UnknownNameError:
        """The error for an unknown ``name``: ``message`` (default :attr:`unknown_message`) + did you mean.

        ``fields`` fill further ``{placeholders}`` of the message.
        """
        names = self.names()
        text = (message or self.unknown_message).format(
            kind=self.kind, name=name, names=", ".join(names), quoted=", ".join(repr(n) for n in names), **fields)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6) if isinstance(name, str) else []
        if close:
            text += f" Did you mean {' or '.join(repr(c) for c in close)}?"
        return UnknownNameError(text)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={sorted(self._entries)})"

    # ----------------------------------------------------------------------------- plugins

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # first, so a plugin that looks names up while loading does not recurse
        for point in importlib.metadata.entry_points(group=self.group):
            where = f"entry point {point.name!r} = {point.value!r} in group {self.group!r}"
            if point.dist is not None:
                where += f" (distribution {point.dist.name})"
            try:
                obj = point.load()
                if self._register_entry_point is not None:
                    self._register_entry_point(point.name, obj)
                else:
                    self.register(point.name, obj, description=first_doc_line(obj))
            except Exception as err:  # a broken plugin must not break the built-in names
                warnings.warn(f"Skipped the {self.kind} {where}: {type(err).__name__}: {err}", RuntimeWarning,
                              stacklevel=3)
