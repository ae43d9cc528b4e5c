"""Typed dataclass configs that load from and save to YAML, and the presets shipped as YAML files.

Every stage has one config dataclass. One loader builds any of them, in three layers:
``stage_config(Cls, stage, preset, yaml_file, {"dotted.key": value})``: the preset (a YAML file in
``eeg2image/configs/<stage>/``), then the user's YAML file, then ``--set``-style overrides. Every key and
type is checked (an unknown key is an error that names it, so a typo never silently falls back to a
default); ``to_dict`` and ``save_config`` write the resolved config next to each output.
``eeg2image presets`` lists the presets with the one-line ``description`` each file starts with.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .io import ConfigError, MissingDataError, atomic_path, check_option

T = TypeVar("T")

__all__ = [
    "PRESET_STAGES",
    "ConfigError",
    "from_dict",
    "list_presets",
    "load_config",
    "parse_sets",
    "preset_data",
    "save_config",
    "stage_config",
    "to_dict",
]

#: The stages that ship presets (``eeg2image/configs/<stage>/<name>.yaml``).
PRESET_STAGES = ("simulation", "preprocess", "run")
#: A preset's (or a user file's) one-line description: documentation, not a config key.
DESCRIPTION_KEY = "description"


def to_dict(obj: Any) -> Any:
    """Plain (YAML/JSON-able) form of a config dataclass, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # ``X | None``: X's own message names what is wrong
            return _convert(value, others[0], where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item_tp = args[0] if args else Any
        conv = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(conv) if origin is tuple else conv
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if tp is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 (PyYAML) reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc
    return obj


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (its ``description`` line dropped), with the file named in every error."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: config file not found.")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from exc
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level.")
    return {k: v for k, v in loaded.items() if k != DESCRIPTION_KEY}


def load_config(cls: type[T], source: str | Path | Mapping[str, Any] | None = None, **overrides: Any) -> T:
    """Load ``cls`` from a YAML file or mapping (or defaults), then apply non-None ``overrides``."""
    data: dict[str, Any] = {}
    if isinstance(source, str | Path):
        data.update(read_yaml(source))
    elif isinstance(source, Mapping):
        data.update(source)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data)


# --------------------------------------------------------------------------------------------------
# Presets (YAML files inside the package) and the one layered loader
# --------------------------------------------------------------------------------------------------


def _preset_folder(stage: str):
    from importlib import resources

    check_option("preset stage", stage, PRESET_STAGES)
    return resources.files("eeg2image") / "configs" / stage


def preset_names(stage: str) -> list[str]:
    return sorted(p.name[:-5] for p in _preset_folder(stage).iterdir() if p.name.endswith(".yaml"))


def _preset_text(stage: str, name: str) -> str:
    check_option(f"{stage} preset", name, preset_names(stage))
    return (_preset_folder(stage) / f"{name}.yaml").read_text()


def preset_data(stage: str, name: str) -> dict[str, Any]:
    """The mapping a preset file holds (without its description)."""
    loaded = yaml.safe_load(_preset_text(stage, name)) or {}
    return {k: v for k, v in loaded.items() if k != DESCRIPTION_KEY}


def list_presets(stage: str | None = None) -> list[tuple[str, str, str]]:
    """(stage, name, one-line description) of every shipped preset."""
    out = []
    for st in [stage] if stage else PRESET_STAGES:
        for name in preset_names(st):
            desc = (yaml.safe_load(_preset_text(st, name)) or {}).get(DESCRIPTION_KEY, "")
            out.append((st, name, " ".join(str(desc).split())))
    return out


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` recursively (mappings merge, anything else replaces)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["train"]["lr"] = value`` for ``key = "train.lr"`` (missing levels are created)."""
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        child = node.get(p)
        if not isinstance(child, dict):
            child = node[p] = {}
        node = child
    node[leaf] = value


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=3e-4"]`` (``--set`` arguments) -> ``{"train.lr": 0.0003}``; values are parsed as YAML."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def stage_config(
    cls: type[T],
    stage: str,
    preset: str | None = None,
    yaml_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """The one loader of every stage: preset -> YAML file -> ``overrides`` (dotted keys, ``None`` skipped).

    A dataclass with a ``preset`` field records the preset's name (unless a layer sets it)."""
    data: dict[str, Any] = {}
    if preset:
        data = merge(data, preset_data(stage, preset))
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if "preset" in names:
            data.setdefault("preset", preset)
    if yaml_file is not None:
        data = merge(data, read_yaml(yaml_file))
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    return from_dict(cls, data)


def save_config(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
