"""One registry per plugin kind, with lazy entry-point loading and provenance.

Built-in plugins register themselves by decorator when their package is imported. Third-party
plugins are found in the entry-point group ``flarena.<kind>s`` (e.g. ``flarena.attacks``) and
loaded only when used; a plugin that fails to import breaks only itself. A ``"module:Object"``
reference works wherever a registered name does.

Examples
--------
>>> from flarena.core import registry
>>> @registry.register("aggregator", "my_mean")
... class MyMean: ...
>>> "my_mean" in registry.names("aggregator", "my_*")
True
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as md
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flarena.core.errors import PluginError, SpecError, allowed, did_you_mean

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = (
    "attack",
    "aggregator",
    "preaggregator",
    "defense",
    "dataset",
    "partitioner",
    "model",
    "algorithm",
    "topology",
    "engine",
    "privacy_attack",
    "gossip_rule",
)

# Packages whose import registers the built-in plugins of each kind.
_BUILTIN_PACKAGES: dict[str, tuple[str, ...]] = {
    "attack": ("flarena.attacks",),
    "aggregator": ("flarena.defenses.aggregators",),
    "preaggregator": ("flarena.defenses.preaggregators",),
    "defense": ("flarena.defenses",),
    "dataset": ("flarena.datasets",),
    "partitioner": ("flarena.datasets.partitioners",),
    "model": ("flarena.models",),
    "algorithm": ("flarena.algorithms",),
    "topology": ("flarena.algorithms",),
    "engine": ("flarena.engines",),
    "privacy_attack": ("flarena.attacks.privacy",),
    "gossip_rule": ("flarena.defenses.gossip",),
}

T = TypeVar("T")


@dataclass
class Entry:
    """A registered plugin: its object (loaded lazily for entry points) and where it came from."""

    name: str
    kind: str
    obj: Any = None
    entry_point: md.EntryPoint | None = None
    distribution: str = "flarena"
    version: str = ""
    load_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """Human-readable origin, e.g. ``flarena 0.1.0`` or ``mypkg 1.2 (entry point)``."""
        if self.entry_point is not None:
            return f"{self.distribution} {self.version} (entry point)"
        if self.distribution == "<reference>":
            return "module reference"
        return f"{self.distribution} {self.version}".strip()

    def load(self) -> Any:
        """Import the plugin object if it is an unloaded entry point."""
        if self.obj is None and self.entry_point is not None:
            if self.load_error is not None:
                raise PluginError(
                    f"{self.kind} plugin {self.name!r} from {self.origin} failed to load: "
                    f"{self.load_error}"
                )
            try:
                self.obj = self.entry_point.load()
            except Exception as exc:  # a broken plugin breaks only itself
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.info("plugin %s/%s failed to load: %s", self.kind, self.name, exc)
                raise PluginError(
                    f"{self.kind} plugin {self.name!r} from {self.origin} failed to load: "
                    f"{self.load_error}"
                ) from exc
        return self.obj

    @property
    def summary(self) -> str:
        """First line of the plugin's docstring."""
        try:
            obj = self.load()
        except PluginError as exc:
            return f"[failed to load] {self.load_error or exc}"
        doc = inspect.getdoc(obj) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def provenance(self) -> dict[str, str]:
        """Record of where this plugin came from, stored in every run that uses it."""
        return {
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "origin": "entry_point"
            if self.entry_point is not None
            else "builtin"
            if self.distribution == "flarena"
            else "reference",
        }


def _flarena_version() -> str:
    try:
        return md.version("flarena")
    except md.PackageNotFoundError:  # running from a source tree
        from flarena import __version__

        return __version__


class Registry:
    """The plugins of one kind."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; allowed: {allowed(KINDS)}")
        self.kind = kind
        self.group = f"flarena.{kind}s"
        self._entries: dict[str, Entry] = {}
        self._builtins_loaded = False
        self._entry_points_loaded = False

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Class or function decorator registering a built-in plugin under ``name``."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None) or getattr(obj, "__name__", None)
            if not isinstance(key, str) or not key:
                raise PluginError(f"cannot infer a {self.kind} name for {obj!r}")
            module = getattr(obj, "__module__", "") or ""
            dist, version = ("flarena", _flarena_version())
            if not module.startswith("flarena"):
                dist, version = _distribution_of(module)
            self._add(Entry(key, self.kind, obj=obj, distribution=dist, version=version))
            return obj

        return deco

    def _add(self, entry: Entry) -> None:
        old = self._entries.get(entry.name)
        if old is not None and old.obj is not entry.obj:
            raise PluginError(
                f"duplicate {self.kind} name {entry.name!r}: already registered by {old.origin}"
            )
        self._entries[entry.name] = entry

    def unregister(self, name: str) -> None:
        """Remove a plugin (for tests)."""
        self._entries.pop(name, None)

    # -- discovery ----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for pkg in _BUILTIN_PACKAGES.get(self.kind, ()):
                importlib.import_module(pkg)
        if not self._entry_points_loaded:
            self._entry_points_loaded = True
            for ep in md.entry_points(group=self.group):
                dist = getattr(ep, "dist", None)
                dname = dist.metadata["Name"] if dist is not None else "unknown"
                dver = dist.version if dist is not None else ""
                entry = Entry(ep.name, self.kind, entry_point=ep, distribution=dname, version=dver)
                if ep.name in self._entries:
                    old = self._entries[ep.name]
                    log.warning(
                        "%s plugin %r from %s clashes with %s; keeping the first",
                        self.kind,
                        ep.name,
                        entry.origin,
                        old.origin,
                    )
                    continue
                self._entries[ep.name] = entry

    def reload_entry_points(self) -> None:
        """Forget discovered entry points so that the next lookup scans again (for tests)."""
        self._entries = {k: e for k, e in self._entries.items() if e.entry_point is None}
        self._entry_points_loaded = False

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard pattern."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entry(self, name: str) -> Entry:
        """The entry for ``name`` or a ``"module:Object"`` reference."""
        self._ensure_loaded()
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            return _reference_entry(self.kind, name)
        raise SpecError(
            f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
            f"allowed: {allowed(self._entries)}"
        )

    def get(self, name: str) -> Any:
        """The plugin object (class or factory) for ``name``."""
        try:
            return self.entry(name).load()
        except PluginError as exc:
            raise SpecError(str(exc)) from exc

    def create(self, name: str, /, **params: Any) -> Any:
        """Instantiate plugin ``name`` with keyword ``params``, rejecting unknown ones."""
        obj = self.get(name)
        check_params(obj, params, what=f"{self.kind} {name!r}")
        try:
            return obj(**params)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"{self.kind} {name!r}: {exc}") from exc

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries


def parameters_of(obj: Any) -> dict[str, inspect.Parameter]:
    """Keyword parameters accepted by a plugin class or factory (``self`` excluded)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    return {
        k: p
        for k, p in sig.parameters.items()
        if k != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_KEYWORD)
    }


def check_params(obj: Any, params: dict[str, Any], *, what: str) -> None:
    """Raise :class:`SpecError` naming unknown or missing parameters and the valid ones."""
    accepted = parameters_of(obj)
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    valid = [k for k in accepted]
    for key in params:
        if key not in accepted:
            raise SpecError(
                f"{what}: unknown parameter {key!r}{did_you_mean(key, valid)}; "
                f"valid parameters: {allowed(valid)}"
            )
    missing = [
        k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in params
    ]
    if missing:
        raise SpecError(f"{what}: missing required parameter(s) {', '.join(missing)}")


def _distribution_of(module: str) -> tuple[str, str]:
    top = module.split(".")[0]
    for dist_name in md.packages_distributions().get(top, []):
        try:
            return dist_name, md.version(dist_name)
        except md.PackageNotFoundError:
            continue
    return "<reference>", ""


def _reference_entry(kind: str, ref: str) -> Entry:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise SpecError(
            f"cannot load {kind} reference {ref!r}: {type(exc).__name__}: {exc}"
        ) from exc
    dist, version = _distribution_of(module_name)
    return Entry(ref, kind, obj=obj, distribution=dist, version=version)


_REGISTRIES: dict[str, Registry] = {}


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (one of :data:`KINDS`)."""
    if kind not in _REGISTRIES:
        _REGISTRIES[kind] = Registry(kind)
    return _REGISTRIES[kind]


def register(kind: str, name: str | None = None) -> Callable[[T], T]:
    """Register a plugin of ``kind`` under ``name`` (decorator)."""
    return registry(kind).register(name)


def names(kind: str, pattern: str = "*") -> list[str]:
    """Names of the plugins of ``kind`` matching ``pattern``."""
    return registry(kind).names(pattern)


def get(kind: str, name: str) -> Any:
    """The plugin object of ``kind`` called ``name``."""
    return registry(kind).get(name)


def create(kind: str, name: str, /, **params: Any) -> Any:
    """Instantiate the plugin of ``kind`` called ``name`` with ``params``."""
    return registry(kind).create(name, **params)


def provenance(kind: str, name: str) -> dict[str, str]:
    """Where the plugin came from (distribution, version, origin)."""
    return registry(kind).entry(name).provenance()
