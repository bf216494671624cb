"""Stage configuration: one dataclass per stage, YAML files, CLI overrides.

Each stage's options are a dataclass whose fields carry their help text in
``field(metadata={"help": ...})``. :func:`add_dataclass_arguments` turns the
fields into ``--kebab-case`` options (every option documented in ``--help``),
and :func:`resolve_config` builds the final config in this order of priority:
command-line options, then the ``--config`` YAML file, then the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from perlhf.errors import UserError

T = TypeVar("T")


def option(default: Any, help: str, *, choices: list[str] | None = None, short: str | None = None) -> Any:
    """A dataclass field with help text (and optional choices) for the CLI."""
    meta = {"help": help, "choices": choices, "short": short}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def mixed_precision_option(default: str = "auto", note: str = "") -> Any:
    """``--mixed-precision``, the same option for every training stage (rm, sft, rl); ``note`` ends its help."""
    return option(default, "autocast forward passes; weights and optimizer stay in --dtype. auto: bf16 where the "
                  "hardware multiplies it natively (CUDA with bf16; CPUs with AVX512_BF16 or AMX, about 1.5x "
                  "faster there), else fp32. bf16 on a CPU without them is emulated and 20-170x slower "
                  f"(warned); fp16 needs CUDA; no: fp32{note}",
                  choices=["auto", "no", "bf16", "fp16"])


def report_to_option() -> Any:
    """``--report-to``, the same for every training stage."""
    return option("tensorboard", "also log to TensorBoard (when installed) or Weights & Biases",
                  choices=["tensorboard", "wandb", "none"])


def progress_option() -> Any:
    """``--progress``: a bar of optimizer steps with the stage's key metric and an ETA."""
    return option(True, "show a progress bar (i/N steps, key metrics, ETA); false: one log line per step")


def bool_flag(parser: argparse.ArgumentParser | Any, flag: str, help: str) -> None:
    """A boolean option spelled like every dataclass option: ``--flag`` (true), ``--flag true|false``."""
    parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, default=False, metavar="true|false",
                        help=f"{help} (default: False)")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) for annotations like ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _converter(tp: Any, optional: bool):
    def convert(text: str):
        if optional and text.strip().lower() in ("none", "null", ""):
            return None
        if tp is bool:
            return _parse_bool(text)
        if typing.get_origin(tp) is list:
            (inner,) = typing.get_args(tp) or (str,)
            return [inner(x) for x in text.split(",") if x.strip()]
        value = tp(text)
        if tp is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        return value

    convert.__name__ = getattr(tp, "__name__", str(tp))
    return convert


def option_heading(cls: type, name: str) -> str | None:
    """The ``--help`` heading of option ``name`` of ``cls``: the ``GROUP`` of the option group that declares
    it (a class setting ``GROUP`` in its own body, :mod:`perlhf.train.options`), or None for the stage's own
    options. A stage that redeclares a group option to change its default leaves it in the group."""
    for c in reversed(cls.__mro__):
        if "GROUP" in vars(c) and name in vars(c).get("__annotations__", {}):
            return vars(c)["GROUP"]
    return None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--option`` per dataclass field. Defaults are left as None so that
    the YAML file can fill what the command line did not set."""
    hints = _type_hints(cls)
    own = cls.__doc__.splitlines()[0].rstrip(".").replace("``", "") if cls.__doc__ else f"{cls.__name__} options"
    headings = {None: own}
    for f in dataclasses.fields(cls):
        headings.setdefault(option_heading(cls, f.name), None)
    groups = {h: parser.add_argument_group(f"{own if h is None else h + ' options'} (also settable in the "
                                           "--config YAML file)") for h in headings}
    fields = sorted(dataclasses.fields(cls), key=lambda f: list(headings).index(option_heading(cls, f.name)))
    for f in fields:  # the stage's own options first, then each group's, as --help shows them
        group = groups[option_heading(cls, f.name)]
        tp, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default!r})"
        names = [flag] + ([f.metadata["short"]] if f.metadata.get("short") else [])
        kwargs: dict[str, Any] = dict(dest=f.name, default=None, help=help_text)
        if tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "true|false"
            kwargs["nargs"] = "?"
            kwargs["const"] = True
        else:
            kwargs["type"] = _converter(tp, optional)
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            kwargs["metavar"] = "{" + ",".join(f.metadata["choices"]) + "}" if f.metadata.get("choices") else f.name.upper()
        group.add_argument(*names, **kwargs)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with any of the options above (snake_case or kebab-case keys); "
        "options given on the command line win over the file",
    )


def load_yaml_config(path: Path, cls: type) -> dict[str, Any]:
    """Read a YAML mapping of options for ``cls``; unknown keys are an error naming the file."""
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise UserError(f"{path}: unknown option {key!r}; known options: {', '.join(sorted(names))}")
        out[name] = value
    return out


def _coerce(cls: type, name: str, value: Any, source: str) -> Any:
    tp, optional = _base_type(_type_hints(cls)[name])
    if value is None:
        if optional:
            return None
        raise UserError(f"{source}: option {name!r} cannot be null")
    if tp is bool and isinstance(value, str):
        try:
            return _parse_bool(value)
        except argparse.ArgumentTypeError as exc:
            raise UserError(f"{source}: option {name!r}: {exc}") from None
    if typing.get_origin(tp) is list:
        if isinstance(value, str):
            value = [x for x in value.split(",") if x.strip()]
        (inner,) = typing.get_args(tp) or (str,)
        return [inner(v) for v in value]
    if tp in (int, float, str, bool):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = tp(value)
            if tp is float and not math.isfinite(out):
                raise ValueError
            return out
        except (TypeError, ValueError):
            what = "a finite number" if tp is float else tp.__name__
            raise UserError(f"{source}: option {name!r} must be {what}, got {value!r}") from None
    return value


def resolve_config(cls: type[T], args: argparse.Namespace | None = None, *, config_path: Path | None = None,
                   overrides: dict[str, Any] | None = None) -> T:
    """Defaults < YAML file < command-line options (< explicit ``overrides``)."""
    values: dict[str, Any] = {}
    path = config_path if config_path is not None else getattr(args, "config", None)
    if path is not None:
        for k, v in load_yaml_config(Path(path), cls).items():
            values[k] = _coerce(cls, k, v, str(path))
    if args is not None:
        for f in dataclasses.fields(cls):
            v = getattr(args, f.name, None)
            if v is not None:
                values[f.name] = v
    for k, v in (overrides or {}).items():
        values[k] = _coerce(cls, k, v, "override")
    cfg = cls(**values)
    check = getattr(cfg, "validate", None)
    if callable(check):
        check()
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-safe dict of a config dataclass (Paths become strings)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out
