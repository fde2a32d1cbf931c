"""Named, self-registering components of every kind and their typed arguments.

One mechanism for all of them: strategies, schedules, selection rules, heads, poolings, losses,
optimizers, datasets and dataset layouts, surgery ops, augmentations and normalisations each have
one :class:`Registry`, created in the lowest module of its kind and indexed in
:data:`Registry.kinds` (``medtl components`` lists them all). A component declares its arguments
once (:class:`Arg`); from that single declaration come the validation of a run's config, the
``--strategy-arg key=value`` parsing, ``medtl components`` and the notebook's table. Adding a
component is one new class with a ``@REGISTRY.register`` line, in a new module of the kit or in a
user's plugin (:mod:`medtl_lib.plugins`). A kit module is found by its name, with no import to
add anywhere: each registry's ``lazy`` names its package and prefix (``models/pool_<name>.py``,
``training/loss_<name>.py``, ``data/dataset_<name>.py``, ...), imported the first time the
name is asked for; ``medtl components`` lists them.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Iterable, Iterator, TypeVar

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
    """Components with ``name``, ``description`` and ``args`` (a tuple of :class:`Arg`).

    A component is usually a class (built with its arguments by :meth:`build`); catalogue entries
    such as datasets are instances with a ``name``. ``lazy=(package, prefix)`` makes a module
    ``<package>.<prefix><name>`` register itself the first time ``name`` is asked for (a new head
    is the file ``models/head_<name>.py``, nothing else). ``flag`` is the command-line option that
    passes the component's arguments, if any (``--strategy-arg``). Every registry is indexed by
    its kind in :data:`Registry.kinds`. A registry reads like a read-only mapping name ->
    component (``name in R``, ``R[name]``, ``list(R)``).
    """

    #: every registry by kind, in creation order (``medtl components``)
    kinds: ClassVar[dict[str, "Registry"]] = {}

    def __init__(self, kind: str, description: str = "", flag: str | None = None,
                 lazy: tuple[str, str] | None = None) -> None:
        self.kind = kind
        self.description = description
        self.flag = flag
        self.lazy = lazy
        self._items: dict[str, type] = {}
        Registry.kinds[kind] = self

    def register(self, cls: Any) -> Any:
        name = cls.name
        old = self._items.get(name)
        if old is not None and old is not cls and not _same_definition(old, cls):
            raise ValueError(f"{self.kind} '{name}' is registered twice (already registered by "
                             f"{_qualname(old)})")
        names = [a.name for a in getattr(cls, "args", ())]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.kind} '{name}' declares an argument twice")
        self._items[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests; a plugin replacing a component registers after this)."""
        self._items.pop(name, None)

    # -- mapping-like reading
    def __contains__(self, name: object) -> bool:
        return name in self._items or (isinstance(name, str) and self._load(name))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> Any:
        if name not in self:
            raise KeyError(name)
        return self._items[name]

    def items(self) -> list[tuple[str, Any]]:
        return list(self._items.items())

    def values(self) -> list[Any]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def _load(self, name: str) -> bool:
        """Import ``<package>.<prefix><name>`` if there is such a module (``lazy``)."""
        if self.lazy is None or not name.isidentifier():
            return False
        module = f"{self.lazy[0]}.{self.lazy[1]}{name}"
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(module)
        return name in self._items

    def _lazy_modules(self) -> list[str]:
        """The names ``<name>`` of the modules ``<package>.<prefix><name>`` (``lazy``)."""
        if self.lazy is None:
            return []
        package, prefix = self.lazy
        mod = sys.modules.get(package) or importlib.import_module(package)
        return [m.name[len(prefix):] for m in pkgutil.iter_modules(mod.__path__)
                if m.name.startswith(prefix)]

    def load_all(self) -> None:
        """Import every ``lazy`` module now: for kinds whose names are not module names (report
        notebooks, ``10_representations``) or that a module of several components registers."""
        for name in self._lazy_modules():
            importlib.import_module(f"{self.lazy[0]}.{self.lazy[1]}{name}")

    def available(self) -> list[str]:
        """Registered names plus the lazily registering modules not yet imported."""
        found = set(self._lazy_modules())
        return list(self._items) + sorted(found - set(self._items))

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str) -> Any:
        if name not in self:
            known = self.available()
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; available: "
                             f"{', '.join(known)}")
        return self._items[name]

    def check(self, name: str, field: str | None = None) -> None:
        """ValueError unless ``name`` is registered, in RunConfig's words for ``field``."""
        if name not in self:
            known = self.available()
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{field or self.kind} must be one of {known}, got {name!r}{hint}")

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
        """One row per component, arguments with types and defaults (``medtl components``)."""
        for name in self.available():  # lazily registering modules too
            self._load(name)
        return [{"name": n, "description": describe(c),
                 "arguments": [{"name": a.name, "type": a.type, "default": a.default,
                                "help": a.help, **({"choices": list(a.choices)}
                                                   if a.choices else {})}
                               for a in getattr(c, "args", ())]}
                for n, c in self._items.items()]


def describe(component: Any) -> str:
    """A component's one-line description: ``description``, a dataset's ``title``, or the first
    line of its docstring."""
    text = getattr(component, "description", None) or getattr(component, "title", None)
    if not text:
        doc = getattr(component, "__doc__", None) or ""
        text = doc.strip().splitlines()[0] if doc.strip() else ""
    return str(text)


def _same_definition(old: Any, new: Any) -> bool:
    """A module reload registers the same class again; an equal catalogue entry is the same."""
    if isinstance(old, type) or callable(old):
        return _qualname(old) == _qualname(new)
    return old == new


def _qualname(obj: Any) -> str:
    """Where a component was defined."""
    if not isinstance(obj, type) and not callable(obj):
        return repr(getattr(obj, "name", obj))
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def signature_args(fn: Any, skip: int = 0) -> tuple[Arg, ...]:
    """:class:`Arg` s from a builder's keyword parameters with int/float/str/bool defaults (a
    plain function registered the old way still gets declared, validated arguments)."""
    import inspect

    out = []
    for i, p in enumerate(inspect.signature(fn).parameters.values()):
        if i < skip or p.default is inspect.Parameter.empty or p.kind not in (
                p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        kind = type(p.default).__name__
        if kind in _TYPES:
            out.append(Arg(p.name, kind, p.default, ""))
    return tuple(out)


def parse_key_values(items: Iterable[str], flag: str = "--strategy-arg") -> dict[str, str]:
    """``["lp_epochs=3", "ft_lr_factor=0.1"]`` -> a dict of strings (typed later by the Arg)."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
