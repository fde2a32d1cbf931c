"""Plugins: a user's own components (strategies, datasets, heads, losses, ...) without editing
the kit.

A plugin is a Python module or a ``.py`` file that registers components when it is imported,
with the same ``@REGISTRY.register`` line the kit's own components use (:mod:`medtl_lib.api`
exports the registries, :class:`~medtl_lib.registry.Arg` and the base classes). It is loaded by

* ``--plugin MODULE_OR_FILE.py`` on any ``medtl`` command (repeatable);
* the ``plugins:`` key of a run profile (a list of the same; the orchestration calls
  :func:`load_plugins`);
* an installed package's entry point in the group ``medtl.plugins`` (``pyproject.toml``:
  ``[project.entry-points."medtl.plugins"] my_kit = "my_kit.medtl_components"``), loaded once per
  process by :func:`load_entry_point_plugins`;
* in a notebook or script: ``from medtl_lib.plugins import load_plugins; load_plugins([...])``,
  or simply ``import`` the module.

Loading is idempotent (a module or file already loaded is not run again). A missing module or
file, or a plugin that raises while loading, is a :class:`PluginError` naming the plugin.
Components only exist in processes that loaded the plugin: ``medtl train --nproc N`` passes
``--plugin`` on to its worker processes; DataLoader workers started with ``spawn`` do not see them.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable

ENTRY_POINT_GROUP = "medtl.plugins"

_loaded: dict[str, ModuleType] = {}  # a module name or a file's resolved path -> the module
_entry_points_done = False


class PluginError(ImportError):
    """A plugin could not be found or raised while loading (the message names it)."""


def load_plugins(specs: Iterable[str] | None) -> list[ModuleType]:
    """Import each plugin (a module name, e.g. ``my_lab.medtl``, or a path to a ``.py`` file);
    its components register themselves. Returns the modules, in order."""
    return [load_plugin(s) for s in (specs or ())]


def load_plugin(spec: str) -> ModuleType:
    """One plugin; see :func:`load_plugins`."""
    text = str(spec).strip()
    if not text:
        raise PluginError("--plugin needs a module name or a .py file, got an empty string")
    if _is_file_spec(text):
        return _load_file(Path(text).expanduser())
    if text in _loaded:
        return _loaded[text]
    try:
        module = importlib.import_module(text)
    except ModuleNotFoundError as exc:
        if exc.name and (text == exc.name or text.startswith(exc.name + ".")):
            raise PluginError(f"plugin module {text!r} not found (not importable from "
                              f"sys.path); pass a module name or a path to a .py file") from None
        raise PluginError(f"plugin {text!r} failed while loading: "
                          f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise PluginError(f"plugin {text!r} failed while loading: "
                          f"{type(exc).__name__}: {exc}") from exc
    _loaded[text] = module
    return module


def load_entry_point_plugins() -> list[ModuleType]:
    """The installed packages' plugins (entry-point group ``medtl.plugins``), once per process."""
    global _entry_points_done
    if _entry_points_done:
        return []
    _entry_points_done = True
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{ep.name}={ep.value}"
        if key in _loaded:
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin entry point {ep.name!r} ({ep.value}, group "
                              f"{ENTRY_POINT_GROUP}) failed while loading: "
                              f"{type(exc).__name__}: {exc}") from exc
        module = obj if isinstance(obj, ModuleType) else sys.modules.get(
            getattr(obj, "__module__", ""), ModuleType(ep.name))
        if callable(obj) and not isinstance(obj, ModuleType):
            obj()  # an entry point may name a function that registers the components
        _loaded[key] = module
        out.append(module)
    return out


def loaded_plugins() -> list[str]:
    """What has been loaded in this process (module names, file paths, entry points)."""
    return list(_loaded)


def _is_file_spec(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist (--plugin takes a module name or a "
                          f"path to a .py file)")
    key = str(path.resolve())
    if key in _loaded:
        return _loaded[key]
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    name = f"medtl_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PluginError(f"plugin file {path} failed while loading: "
                          f"{type(exc).__name__}: {exc}") from exc
    _loaded[key] = module
    return module
