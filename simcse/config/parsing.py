"""The config from YAML and the command line, and back to YAML: defaults, then a file, then ``--key value``.

Every value is converted to its field's declared type (``_convert``); unknown keys are rejected with the
nearest known one; a problem names its source (the file and line, or the command line).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from typing import Any, Literal, get_args, get_origin

import yaml

from simcse.config.train_config import FIELDS, TrainConfig
from simcse.io import StrPath


def _convert(name: str, value: Any, source: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in get_args(hint) if a is not type(None)]
    optional = get_origin(hint) in (typing.Union, types.UnionType) and type(None) in get_args(hint)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    target = args[0] if optional and len(args) == 1 else hint
    try:
        if get_origin(target) is dict:
            return _mapping(value)
        if get_origin(target) is list:
            return _specs(value)
        if isinstance(value, (dict, list)) and get_origin(target) is not tuple:
            raise ValueError(f"expected a single value, got a {type(value).__name__}")
        if get_origin(target) is Literal:
            if value not in get_args(target):
                quote = " (YAML reads unquoted yes/no/on/off as booleans: quote it)" if isinstance(value, bool) else ""
                raise ValueError(f"must be one of {get_args(target)}{quote}")
            return value
        if get_origin(target) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items)
        if target is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError("expected true or false")
        if target in (int, float) and isinstance(value, bool):
            raise ValueError(f"expected a number, got {value}")
        if target is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return target(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {name}={value!r}: {err}") from None


def _mapping(value: Any) -> dict[str, str]:
    """A ``{name: text}`` mapping from YAML, or from a JSON object on the command line."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError('expected a mapping (on the command line a JSON object: \'{"sent0": "Q: "}\')') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("expected a mapping of column name to prompt text")
    return dict(value)


def _specs(value: Any) -> list[dict[str, Any]]:
    """A list of mappings (evaluator specs) from YAML, or from a JSON list on the command line."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a list (on the command line a JSON list: '[{\"type\": ...}]')") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("expected a list of evaluator specs (mappings with a type)")
    return [dict(v) for v in value]


def _check_key(key: str, source: str) -> None:
    if key not in FIELDS:
        near = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"{source}: unknown config key {key!r}{hint}")


def load_config(path: StrPath | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Build a config from defaults, then a YAML file, then overrides; unknown keys are rejected."""
    values: dict[str, Any] = {}
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: config file {'is a directory' if os.path.isdir(path) else 'not found'}")
        with open(path, "rb") as f:
            raw = f.read()
        try:
            loaded = yaml.safe_load(raw.decode("utf-8")) or {}
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise ValueError(f"{path}:{line}: invalid UTF-8 ({err.reason})") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        for key, value in loaded.items():
            _check_key(str(key), path)
            values[key] = _convert(key, value, path)
    for key, value in (overrides or {}).items():
        _check_key(key, "command line")
        values[key] = _convert(key, value, "command line")
    try:
        return TrainConfig(**values)
    except ValueError as err:  # a value of the right type but out of range: say where it came from
        sources = [s for s, given in ((path, path), ("command line", overrides)) if given]
        raise ValueError(f"{' + '.join(sources) or 'config'}: {err}") from None


def parse_overrides(args: list[str]) -> dict[str, str]:
    """Turn ``["--key", "value", "--flag=value"]`` into ``{"key": "value", ...}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"command line: expected --key value, got {arg!r}")
        key = arg[2:]
        if "=" in key:  # only the key's dashes become underscores: the value (a path, 1e-3) is kept
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            i += 2
        else:
            value = "true"  # a bare --flag sets a boolean
            i += 1
        out[key.replace("-", "_")] = value
    return out


def to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (tuples as lists)."""
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    return yaml.safe_dump(data, sort_keys=False)


