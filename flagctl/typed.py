"""Typed flags on the command line: a flag's variants as `NAME=JSON` or a JSON file, a level's variant or split.

The values are JSON so that every type says itself the same way (`'"#00f"'` a string, `3` an integer, `3.5` a
float, `'{"rows": 2}'` an object); the command API checks them against the flag's type and names the field it
refuses. Only the standard library: the parser is built before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flagctl.errors import UsageError

__all__ = ["TYPES", "definition_fields", "describe_setting", "selection_fields", "split"]

TYPES = ("boolean", "string", "integer", "float", "object")


def definition_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The typed part of `POST /v1/flags`: type, variants (name → value), default and off variant, as given."""
    typed = args.type not in (None, "boolean")
    if not typed and args.variants_file:
        raise UsageError("--variants-file: name the flag's type with --type (string, integer, float, object)")
    fields: dict[str, Any] = {} if args.type is None else {"type": args.type}
    if typed:
        fields["variants"] = _values(args.variant, args.variants_file)
    else:
        fields["variants"] = [_arm(text) for text in args.variant]
    if args.default_variant is not None:
        fields["default_variant"] = args.default_variant
    if args.off_variant is not None:
        fields["off_variant"] = args.off_variant
    return fields


def selection_fields(args: argparse.Namespace) -> dict[str, Any]:
    """What `flagctl set` asks a level to serve when on: `variant`, `split`, or (`--no-variant`) the default."""
    if args.variant is not None:
        return {"variant": args.variant}
    if args.split is not None:
        return {"split": args.split}
    if args.no_variant:
        return {"variant": None}
    return {}


def split(text: str) -> list[dict[str, Any]]:
    """`blue=300,dark=700`: variants and weights in thousandths (the API wants them to sum to 1000)."""
    arms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if not name or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{part!r}: give NAME=WEIGHT, e.g. blue=300,dark=700")
        arms.append({"name": name.strip(), "weight": int(weight)})
    if not arms:
        raise argparse.ArgumentTypeError("give at least one NAME=WEIGHT, e.g. blue=300,dark=700")
    return arms


def describe_setting(setting: dict[str, Any] | None) -> str:
    """A system default in a few words: `on at 25%, variant blue`, `off`, `unset`."""
    if not setting or (setting.get("enabled") is None and setting.get("rollout_percentage") is None
                       and setting.get("variant") is None and not setting.get("split")):
        return "unset"
    words = [{True: "on", False: "off", None: "on/off unset"}[setting.get("enabled")]]
    if setting.get("rollout_percentage") is not None:
        words[0] += f" at {setting['rollout_percentage']}%"
    if setting.get("variant") is not None:
        words.append(f"variant {setting['variant']}")
    elif setting.get("split"):
        words.append("split " + ",".join(f"{arm['name']}={arm['weight']}" for arm in setting["split"]))
    return ", ".join(words)


def _arm(text: str) -> dict[str, Any]:
    name, _, weight = text.partition("=")
    if not weight.isdigit():
        raise UsageError(f"--variant {text!r}: an experiment arm is NAME=WEIGHT, e.g. control=50 "
                         "(a typed flag's variants, NAME=JSON, need --type)")
    return {"name": name, "weight": int(weight)}


def _values(given: list[str], path: str | None) -> dict[str, Any]:
    if given and path:
        raise UsageError("give the variants with --variant or in --variants-file, not both")
    if path:
        return _values_file(path)
    values: dict[str, Any] = {}
    for text in given:
        name, sep, raw = text.partition("=")
        if not sep or not name:
            raise UsageError(f"--variant {text!r}: give NAME=JSON, e.g. blue='\"#0000ff\"' or size=3")
        if name in values:
            raise UsageError(f"--variant {name}: given twice")
        try:
            values[name] = _json(raw)
        except ValueError:
            raise UsageError(f"--variant {name}: {raw!r} is not JSON (a string is quoted: {name}='\"{raw}\"')"
                             ) from None
    return values


def _json(text: str) -> Any:
    """Strict JSON: NaN and Infinity, which Python's parser takes, are not JSON and no flag holds them."""
    return json.loads(text, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _values_file(path: str) -> dict[str, Any]:
    try:
        values = _json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--variants-file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--variants-file {path}: not JSON: {exc}") from None
    if not isinstance(values, dict):
        raise UsageError(f"--variants-file {path}: a JSON object of variant name → value, e.g. {{\"blue\": \"#00f\"}}")
    return values
