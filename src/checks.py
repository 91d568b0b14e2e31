"""The lab's shared input checks: each failure is one line that names the config key (or file and
column) and the bad value, raised where the value enters."""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from typing_extensions import get_protocol_members


class ConfigError(ValueError):
    """A config value the lab refuses; the message names the key and the value."""


class InputFileError(ValueError):
    """A data file the lab refuses; the message names the file and, where it helps, the column or row."""


def check_choice(key: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ConfigError naming ``key``.

    A bool matches only a bool: ``1 == True`` in Python, but ``1`` is no choice of ``(False, True)``.
    """
    if not any(value == choice and isinstance(value, bool) == isinstance(choice, bool) for choice in choices):
        raise ConfigError(f"{key}={value!r} is not one of {tuple(choices)}")
    return value


def check_number(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """``value`` as an int or float inside [low, high] (open ends where asked), else a ConfigError."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ConfigError(f"{key}={value!r} must be {kind}")
    value = int(value) if integer else float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above or value != value:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{key}={value!r} must lie in {interval}")
    return value


def check_declares(key: str, obj: Any, contract: type) -> None:
    """``obj`` (built from config ``key``) has every attribute and method the Protocol ``contract`` names."""
    missing = sorted(name for name in get_protocol_members(contract) if not hasattr(obj, name))
    if missing:
        kind = obj if isinstance(obj, type) else type(obj)
        raise ConfigError(
            f"{key}._target_={kind.__qualname__} lacks {', '.join(missing)}, which a {contract.__name__} "
            f"declares (src/models/tasks/contract.py)"
        )


def check_same(key: str, value: Any, other_key: str, other_value: Any) -> None:
    """Two settings that must agree (a net's size and its data's): a ConfigError naming both otherwise."""
    if value != other_value:
        raise ConfigError(
            f"{key}={value} but {other_key}={other_value}: they must agree; leave {key} at its default ${{{other_key}}}"
        )


def check_file(key: str, path: Any) -> Path:
    """``path`` as a Path if it names an existing file, else an InputFileError naming ``key``."""
    if not path or not Path(str(path)).is_file():
        raise InputFileError(f"{key}={path}: no such file")
    return Path(str(path))


def load_checkpoint(key: str, path: Any) -> dict[str, Any]:
    """The Lightning checkpoint at ``path`` (loaded on the CPU, weights only), or an InputFileError
    that names ``key`` and says whether the file is missing, unreadable or not a checkpoint."""
    path = check_file(key, path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a truncated or foreign file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputFileError(f"{key}={path} is not a readable checkpoint ({reason[:120]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputFileError(f"{key}={path} is not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint


def check_arguments(node: DictConfig, key: str) -> None:
    """Every key of a ``_target_`` config node against its target's signature, recursively: an unknown
    key, or a value of the wrong type (a string where a number belongs), is a ConfigError naming
    ``<key>.<name>``. Type hints the check cannot judge from a config value (a class, a callable) pass."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        factory = hydra.utils.get_object(target)
    except Exception:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported") from None
    signature = inspect.signature(factory)
    hints = _type_hints(factory)
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    for name in node:
        name = str(name)
        if name.startswith("_"):
            continue
        if name not in signature.parameters and not open_ended:
            known = ", ".join(p for p in signature.parameters if p not in ("self", "args", "kwargs"))
            raise ConfigError(f"{key}.{name} is not a setting of {target} (it takes: {known})")
        value = node[name]
        if isinstance(value, DictConfig) and "_target_" in value:
            check_arguments(value, f"{key}.{name}")
            continue
        hint = hints.get(name)
        if hint is not None and not _fits(value, hint):
            raise ConfigError(f"{key}.{name}={_shown(value)} must be {_describe(hint)}")


def _type_hints(factory: Any) -> dict[str, Any]:
    function = factory.__init__ if isinstance(factory, type) else factory
    try:
        return typing.get_type_hints(function)
    except Exception:  # a hint naming a type only imported for type checkers: judge the others
        hints = {}
        for name, annotation in getattr(function, "__annotations__", {}).items():
            try:
                hints[name] = typing.get_type_hints(_Annotated(annotation), getattr(function, "__globals__", {}))["x"]
            except Exception:
                pass
        return hints


class _Annotated:
    """One annotation, for typing.get_type_hints to evaluate on its own."""

    def __init__(self, annotation: Any) -> None:
        self.__annotations__ = {"x": annotation}


_PRIMITIVES = (bool, int, float, str, type(None))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a config value can be handed to a parameter hinted ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, (typing.TypeVar, str, typing.ForwardRef)):
        return True
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return isinstance(value, (ListConfig, list, tuple))
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, (DictConfig, dict))
    if isinstance(container, type) and isinstance(value, _PRIMITIVES):
        # a class takes a config value only as something to instantiate; a path class also takes a string
        return isinstance(value, str) and issubclass(container, os.PathLike)
    return True


def _describe(hint: Any) -> str:
    """``hint`` in words, leaving out the classes a config value cannot be."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        literals = [v for arg in args if typing.get_origin(arg) is typing.Literal for v in typing.get_args(arg)]
        literals += [None] if literals and type(None) in args else []
        rest = [
            arg for arg in args if typing.get_origin(arg) is not typing.Literal and not (literals and arg is type(None))
        ]
        words = [w for w in map(_describe, rest) if w] + ([_one_of(literals)] if literals else [])
        return " or ".join(dict.fromkeys(words)) or "an object"
    if origin is typing.Literal:
        return _one_of(args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    if (origin or hint) in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return "a list"
    return ""


def _one_of(values: Collection[Any]) -> str:
    return "one of (" + ", ".join("null" if v is None else repr(v) for v in values) + ")"


def _shown(value: Any) -> str:
    return repr(OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value)
