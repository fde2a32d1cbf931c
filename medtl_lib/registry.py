"""Named, self-registering components (strategies, schedules, optimizers, losses) and their
typed arguments.

A component declares its arguments once (:class:`Arg`); from that single declaration come the
validation of a run's config, the ``--strategy-arg key=value`` parsing, ``medtl strategies`` and
the notebook's table. Adding a component is one new class with a ``@REGISTRY.register`` line.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Generic, Iterable, TypeVar

T = TypeVar("T")
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True)
class Arg:
    """One argument of a component: a name, a type, a default and what it means."""

    name: str
    type: str  # int | float | str | bool
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, value: Any) -> Any:
        """A YAML value or a CLI string -> the typed value; ValueError says what is allowed."""
        want = _TYPES[self.type]
        if value is None and self.default is None:
            return None
        try:
            if isinstance(value, str) and want is not str:
                text = value.strip()
                if want is bool:
                    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = text.lower() in ("true", "1", "yes")
                elif text.lower() in ("none", "null") and self.default is None:
                    return None
                else:
                    value = want(float(text)) if want is int and "e" in text.lower() else want(text)
            elif want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if want is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be {self.type}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} must be <= {self.maximum}, got {value!r}")
        return value

    def describe(self) -> str:
        extra = f" one of {'|'.join(map(str, self.choices))}" if self.choices else ""
        return f"{self.name}: {self.type} = {self.default!r}{extra}. {self.help}"


class Registry(Generic[T]):
    """Classes with ``name``, ``description`` and ``args`` (a tuple of :class:`Arg`)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type] = {}

    def register(self, cls: type) -> type:
        name = cls.name
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        names = [a.name for a in getattr(cls, "args", ())]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.kind} '{name}' declares an argument twice")
        self._items[name] = cls
        return cls

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str) -> type:
        if name not in self._items:
            close = difflib.get_close_matches(str(name), self._items, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; available: "
                             f"{', '.join(self._items)}")
        return self._items[name]

    def parse_args(self, name: str, given: dict | None) -> dict[str, Any]:
        """Validate ``given`` against the component's arguments; defaults fill the rest."""
        cls = self.get(name)
        declared = {a.name: a for a in getattr(cls, "args", ())}
        given = dict(given or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            valid = "; ".join(a.describe() for a in declared.values()) or "none"
            raise ValueError(f"{self.kind} '{name}' has no argument(s) {unknown}. Valid arguments: "
                             f"{valid}")
        out = {}
        for key, arg in declared.items():
            try:
                out[key] = arg.parse(given[key]) if key in given else arg.default
            except ValueError as exc:
                raise ValueError(f"{self.kind} '{name}': {exc}") from None
        return out

    def build(self, name: str, given: dict | None = None, **context: Any) -> T:
        return self.get(name)(**self.parse_args(name, given), **context)

    def table(self) -> list[dict[str, Any]]:
        """One row per component, arguments with types and defaults (``medtl strategies``)."""
        return [{"name": n, "description": c.description,
                 "arguments": [{"name": a.name, "type": a.type, "default": a.default,
                                "help": a.help, **({"choices": list(a.choices)}
                                                   if a.choices else {})}
                               for a in getattr(c, "args", ())]}
                for n, c in self._items.items()]


def parse_key_values(items: Iterable[str], flag: str = "--strategy-arg") -> dict[str, str]:
    """``["lp_epochs=3", "ft_lr_factor=0.1"]`` -> a dict of strings (typed later by the Arg)."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
