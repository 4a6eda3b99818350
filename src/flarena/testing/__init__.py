"""Public conformance checks that plugin authors run in their own repositories.

The same checks run on every built-in plugin in flarena's own test suite (in the spirit of
scikit-learn's ``parametrize_with_checks`` and timm's test of every registered model). Each
check is a function of no arguments that raises :class:`AssertionError` with a clear message.
Expectations come from the contracts (``[n, d] -> [d]``, translation equivariance of an
aggregation rule, disjoint partitions, ...), never from running the plugin. Importing this
module does not need pytest.

A plugin that fails a check *by its definition* (e.g. a clipping rule is not translation
equivariant) says so with a class attribute ``_xfail_checks = {"check_name": "reason"}``;
:func:`parametrize_with_checks` marks those checks as expected failures.

Examples
--------
In a plugin's own test suite:

>>> from flarena.testing import parametrize_with_checks
>>> @parametrize_with_checks("aggregator", {"mean": ("mean", {})})
... def test_conformance(plugin, check):
...     check()

Without pytest:

>>> from flarena.testing import check_plugin
>>> check_plugin("aggregator", "mean", weighted=False)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flarena.core import registry
from flarena.core.errors import PluginError
from flarena.testing._attacks import attack_checks
from flarena.testing._common import (
    NamedCheck,
    Plugin,
    constructs_check,
    generic_checks,
    get_params_check,
    resolve,
    xfail_checks,
)
from flarena.testing._decentralized import gossip_rule_checks, topology_checks
from flarena.testing._misc import algorithm_checks, dataset_checks
from flarena.testing._models import NUM_CLASSES, first_shape, model_checks
from flarena.testing._partitioners import partitioner_checks
from flarena.testing._rules import aggregator_checks, defense_checks, preaggregator_checks

__all__ = [
    "CHECKED_KINDS",
    "NamedCheck",
    "check_aggregator",
    "check_attack",
    "check_gossip_rule",
    "check_plugin",
    "check_preaggregator",
    "check_topology",
    "checks_for",
    "parametrize_with_checks",
    "registered",
]

log = logging.getLogger(__name__)

_KIND_CHECKS: dict[str, Callable[[Plugin], list[NamedCheck]]] = {
    "aggregator": aggregator_checks,
    "preaggregator": preaggregator_checks,
    "defense": defense_checks,
    "attack": attack_checks,
    "partitioner": partitioner_checks,
    "model": model_checks,
    "dataset": dataset_checks,
    "algorithm": algorithm_checks,
    "topology": topology_checks,
    "gossip_rule": gossip_rule_checks,
}
#: Kinds with checks of their own; the others get the generic checks only.
CHECKED_KINDS: tuple[str, ...] = tuple(_KIND_CHECKS)

#: ``{label: (obj_or_factory, params)}``, or a list of ``(obj_or_factory, params)`` / objects.
Plugins = Mapping[str, tuple[Any, Mapping[str, Any]]] | Iterable[Any]


def _checks(plugin: Plugin) -> list[NamedCheck]:
    specific = _KIND_CHECKS.get(plugin.kind, lambda _: [])(plugin)
    if plugin.kind == "model":

        def model_args() -> dict[str, Any]:
            return {"input_shape": first_shape(plugin), "num_classes": NUM_CLASSES}

        return [*specific, *generic_checks(plugin, required=model_args)]
    checks: list[NamedCheck] = [("constructs", constructs_check(plugin)), *specific]
    has_get_params = any(name == "get_params_round_trip" for name, _ in checks)
    source = plugin.instance if plugin.instance is not None else plugin.factory
    if not has_get_params and callable(getattr(source, "get_params", None)):
        checks.append(("get_params_round_trip", get_params_check(plugin)))
    return [*checks, *generic_checks(plugin)]


def checks_for(kind: str, obj_or_factory: Any, /, **params: Any) -> list[NamedCheck]:
    """The named conformance checks that apply to a plugin of ``kind``.

    Building the list does no work beyond inspecting the plugin (an attack given as a factory
    function is constructed once, to learn whether it crafts rows or poisons data); each check
    constructs fresh instances when it runs.

    Parameters
    ----------
    kind : str
        Registry kind: ``aggregator``, ``preaggregator``, ``defense``, ``attack``,
        ``partitioner``, ``model``, ``dataset``, ``algorithm``, ``topology``, ``gossip_rule``
        (other kinds get the generic checks only).
    obj_or_factory : Any
        The plugin class or factory function, a registered name or ``"module:Object"``
        reference, or a constructed object (copied before every check).
    **params : Any
        Keyword parameters the plugin is constructed with.

    Returns
    -------
    list of (str, callable)
        ``(check_name, check)`` pairs; ``check()`` raises :class:`AssertionError` on failure.

    Raises
    ------
    ValueError
        For an unknown kind (``SpecError`` for an unknown registered name).
    """
    return _checks(resolve(kind, obj_or_factory, params))


def check_plugin(
    kind: str, obj_or_factory: Any, /, *, skip: Iterable[str] = (), **params: Any
) -> None:
    """Run every check on a plugin, raising one :class:`AssertionError` listing all failures.

    Checks the plugin declares in ``_xfail_checks``, and those named in ``skip``, are not run.

    Parameters
    ----------
    kind : str
        Registry kind, as in :func:`checks_for`.
    obj_or_factory : Any
        The plugin, as in :func:`checks_for`.
    skip : iterable of str
        Names of checks not to run.
    **params : Any
        Keyword parameters the plugin is constructed with.
    """
    plugin = resolve(kind, obj_or_factory, params)
    skipped = set(skip) | set(xfail_checks(plugin))
    failures = []
    for name, check in _checks(plugin):
        if name in skipped:
            continue
        try:
            check()
        except AssertionError as exc:
            failures.append(f"- {name}: {exc}")
    if failures:
        raise AssertionError(
            f"{kind} {plugin.label} failed {len(failures)} check(s):\n" + "\n".join(failures)
        )


def check_aggregator(obj_or_factory: Any, /, **params: Any) -> None:
    """Run every aggregator check (``check_plugin("aggregator", ...)``)."""
    check_plugin("aggregator", obj_or_factory, **params)


def check_preaggregator(obj_or_factory: Any, /, **params: Any) -> None:
    """Run every pre-aggregator check (``check_plugin("preaggregator", ...)``)."""
    check_plugin("preaggregator", obj_or_factory, **params)


def check_attack(obj_or_factory: Any, /, **params: Any) -> None:
    """Run every attack check (``check_plugin("attack", ...)``)."""
    check_plugin("attack", obj_or_factory, **params)


def check_topology(obj_or_factory: Any, /, **params: Any) -> None:
    """Run every topology check (``check_plugin("topology", ...)``)."""
    check_plugin("topology", obj_or_factory, **params)


def check_gossip_rule(obj_or_factory: Any, /, **params: Any) -> None:
    """Run every gossip-rule check (``check_plugin("gossip_rule", ...)``)."""
    check_plugin("gossip_rule", obj_or_factory, **params)


def _items(plugins: Plugins) -> list[tuple[str, Any, dict[str, Any]]]:
    if isinstance(plugins, Mapping):
        return [(str(label), obj, dict(params)) for label, (obj, params) in plugins.items()]
    items = []
    for item in plugins:
        obj, params = item if isinstance(item, tuple) else (item, {})
        label = obj if isinstance(obj, str) else getattr(obj, "__name__", type(obj).__name__)
        items.append((str(label), obj, dict(params)))
    return items


def parametrize_with_checks(
    kind: str,
    plugins: Plugins,
    /,
    *,
    xfail: Mapping[str, Mapping[str, str]] | None = None,
) -> Any:
    """A ``pytest.mark.parametrize`` decorator over every check of every plugin.

    The decorated test takes the arguments ``plugin`` (the object or factory given) and
    ``check``, and calls ``check()``; test ids are ``"<plugin>-<check>"``.

    Parameters
    ----------
    kind : str
        Registry kind of all the plugins.
    plugins : mapping or iterable
        ``{label: (obj_or_factory, params)}``, or a list of ``(obj_or_factory, params)`` pairs
        or bare objects (labelled by name).
    xfail : mapping, optional
        ``{label: {check_name: reason}}``: checks to mark as expected failures, on top of the
        plugins' own ``_xfail_checks``.

    Returns
    -------
    pytest.MarkDecorator
        The parametrization, to apply to a test function.

    Examples
    --------
    >>> @parametrize_with_checks("aggregator", {"my_rule": (MyRule, {"f": 1})})  # doctest: +SKIP
    ... def test_conformance(plugin, check):
    ...     check()
    """
    import pytest

    params = []
    for label, obj, kw in _items(plugins):
        plugin = resolve(kind, obj, kw)
        plugin.label = label
        expected = {**xfail_checks(plugin), **(xfail or {}).get(label, {})}
        for name, check in _checks(plugin):
            marks = [pytest.mark.xfail(reason=expected[name])] if name in expected else []
            params.append(pytest.param(obj, check, id=f"{label}-{name}", marks=marks))
    return pytest.mark.parametrize(("plugin", "check"), params)


def registered(kind: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every registered plugin of ``kind`` (built-in and entry point) with default parameters.

    Entry-point plugins that fail to load are left out (and logged).

    Parameters
    ----------
    kind : str
        Registry kind.

    Returns
    -------
    dict
        ``{name: (factory, {})}``, ready for :func:`parametrize_with_checks`.
    """
    reg = registry.registry(kind)
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name in reg.names():
        try:
            obj = reg.entry(name).load()
        except PluginError as exc:
            log.warning("skipping %s plugin %r: %s", kind, name, exc)
            continue
        if callable(obj):
            out[name] = (obj, {})
    return out
