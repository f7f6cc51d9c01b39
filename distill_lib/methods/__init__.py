"""The study's methods, one file each in this package: how a student is made (initialisation,
objective, teacher), what figures call it, what its training costs and which notebook trains it.

A new method is a new file here that defines `METHOD = Method(...)` (or an instance of a subclass
that overrides `run_config`); the registry below finds it. Every part of the package that used to
branch on a method's name asks the registry instead. Nothing here imports torch."""
from __future__ import annotations

import importlib
import pkgutil

from distill_lib.methods.base import Method, RunRequest
from distill_lib.schema import ConfigError


def _discover() -> dict[str, Method]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            method = getattr(importlib.import_module(f"{__name__}.{module.name}"), "METHOD", None)
            if isinstance(method, Method):
                found.append(method)
    found.sort(key=lambda m: m.order)
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"distill_lib.methods: two files declare the same method ({names})")
    return {m.name: m for m in found}


#: Every method, in its declared order.
REGISTRY: dict[str, Method] = _discover()
METHODS: tuple[str, ...] = tuple(REGISTRY)
#: The methods a profile trains when it does not list its own.
CORE_METHODS: tuple[str, ...] = tuple(m.name for m in REGISTRY.values() if m.core)
#: The methods a profile variant may build on.
VARIANT_BASES: tuple[str, ...] = tuple(m.name for m in REGISTRY.values() if m.variant_base)
#: How figures and tables name each method.
LABELS: dict[str, str] = {m.name: m.label for m in REGISTRY.values()}
#: One colour per method label in every figure.
COLORS: dict[str, str] = {m.label: m.color for m in REGISTRY.values() if m.color}


def get(name: str) -> Method:
    """The method called `name` (ConfigError naming the valid ones otherwise)."""
    if name not in REGISTRY:
        raise ConfigError(f"method: unknown {name!r} (valid: {', '.join(METHODS)})")
    return REGISTRY[name]


__all__ = ["CORE_METHODS", "COLORS", "LABELS", "METHODS", "Method", "REGISTRY", "RunRequest", "VARIANT_BASES", "get"]
