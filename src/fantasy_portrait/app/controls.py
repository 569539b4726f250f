"""App controls generated from the settings dataclass's field metadata (``pipeline/settings.py``).

Every field of the settings class becomes one :class:`Control` (checkbox, dropdown, slider, number
or text box) in the section named by its ``group``, labelled by its name, with its ``help`` as the
info line and its ``min``/``max``/``choices`` as bounds. A field added to the settings later appears
in the app with no change here. This module does not import gradio: ``ui.py`` turns the controls
into components; the conversions between component values and settings live here (and are tested
without a browser).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

# Fields the app sets itself (the mapping has its own control next to the face preview; progress is
# always on in the page).
APP_OWNED = ("mapping", "progress")
# Sections shown open; every other group is a closed accordion.
OPEN_GROUPS = ("sampling",)


@dataclass
class Control:
    """One settings field as the app shows it.

    kind: checkbox | dropdown | slider | number | text. value_type: int, float, bool or str.
    optional: the field accepts None (an empty box means None). invert: the checkbox shows the
    negation of the field (the settings' ``invert`` flag, e.g. "sequential branches" for
    ``batch_branches=False``). append: a repeatable CLI flag; the text box holds its items separated
    by ';' or new lines (each item as one repetition of the flag).
    """

    name: str
    label: str
    kind: str
    default: Any
    info: str
    group: str
    value_type: type
    optional: bool = False
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    invert: bool = False
    parse: Any = None
    append: bool = False

    @property
    def elem_id(self) -> str:
        return f"setting-{self.name.replace('_', '-')}"

    def to_component_value(self, value: Any) -> Any:
        """A settings value as the component shows it."""
        if self.invert:
            return not bool(value)
        if value is None:
            return "" if self.kind == "text" else None
        if hasattr(value, "tolist"):  # e.g. face boxes given as an array
            value = value.tolist()
        if self.append and isinstance(value, (list, tuple)):
            return "; ".join(str(v) for v in value)
        if self.kind == "text" and not isinstance(value, str):
            return _boxes_text(value) if self.name == "face_boxes" else str(value)
        return value

    def from_component_value(self, value: Any) -> Any:
        """A component value as the settings field's value (raises InputError naming the control)."""
        if self.invert:
            return not bool(value)
        if self.kind == "checkbox":
            return bool(value)
        if self.append:
            items = [] if value is None else [v.strip() for v in re.split(r"[;\n]", str(value))]
            items = [v for v in items if v]
            if isinstance(self.default, str):  # a text default (relative="none"): one item stays text
                return items[0] if len(items) == 1 else (tuple(items) or self.default)
            return tuple(items)
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.optional:
                return None
            if self.value_type is str:
                return ""
            raise InputError(f"{self.label}: a value is needed")
        if self.value_type in (int, float):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{self.label}: not a number: {value!r}") from None
            if self.value_type is int:
                if number != int(number):
                    raise InputError(f"{self.label}: must be a whole number, got {value}")
                return int(number)
            return number
        return value.strip() if isinstance(value, str) else value


def _boxes_text(boxes) -> str:
    return ";".join(",".join(f"{v:g}" for v in box) for box in boxes)


def _type_of(f: dataclasses.Field) -> tuple[type, bool]:
    """(value type, accepts None) of a field from its metadata, default and annotation text."""
    meta = f.metadata
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = f.default is None or "None" in annotation or "Optional" in annotation
    if meta.get("invert") or isinstance(f.default, bool):
        return bool, False
    declared = meta.get("type")
    if declared in (int, float, str, bool):
        return declared, optional
    if f.default is not None and type(f.default) in (int, float, str):
        return type(f.default), optional
    for name, t in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if annotation.split("|")[0].strip() == name:
            return t, optional
    return str, optional


def _label(f: dataclasses.Field) -> str:
    """The CLI flag's words (what the docs and error messages name), else the field name's."""
    flag = f.metadata.get("flag")
    if flag:
        return flag.lstrip("-").replace("-", " ")
    return f.name.replace("_", " ")


def settings_fields(settings_cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(settings_cls) if f.init]


def controls_from(settings_cls, exclude: Iterable[str] = APP_OWNED) -> list[Control]:
    """One Control per field of ``settings_cls`` (a dataclass with the settings metadata), in field order."""
    skip = set(exclude)
    out = []
    for f in settings_fields(settings_cls):
        if f.name in skip or f.metadata.get("app") is False:
            continue
        meta = f.metadata
        value_type, optional = _type_of(f)
        default = f.default
        if default is dataclasses.MISSING:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        choices = tuple(meta["choices"]) if meta.get("choices") else None
        lo, hi = meta.get("min"), meta.get("max")
        if value_type is bool:
            kind = "checkbox"
        elif meta.get("append"):
            kind = "text"
        elif choices:
            kind = "dropdown"
        elif value_type in (int, float) and lo is not None and hi is not None:
            kind = "slider"
        elif value_type in (int, float):
            kind = "number"
        else:
            kind = "text"
        out.append(
            Control(
                name=f.name,
                label=_label(f),
                kind=kind,
                default=default,
                info=str(meta.get("help") or ""),
                group=str(meta.get("group") or "settings"),
                value_type=value_type,
                optional=optional,
                choices=choices,
                minimum=lo,
                maximum=hi,
                invert=bool(meta.get("invert")),
                parse=meta.get("parse"),
                append=bool(meta.get("append")),
            )
        )
    return out


def grouped(controls: Sequence[Control]) -> dict[str, list[Control]]:
    """Controls by group: the open groups first, then the others in order of first appearance."""
    out: dict[str, list[Control]] = {g: [] for g in OPEN_GROUPS}
    for c in controls:
        out.setdefault(c.group, []).append(c)
    return {g: items for g, items in out.items() if items}


def component_values(controls: Sequence[Control], settings=None, overrides: dict | None = None) -> list:
    """What every control shows for ``settings`` (default: the defaults) with ``overrides`` applied."""
    values = []
    for c in controls:
        value = getattr(settings, c.name) if settings is not None else c.default
        if overrides and c.name in overrides:
            value = overrides[c.name]
        values.append(c.to_component_value(value))
    return values


def settings_from_values(settings_cls, controls: Sequence[Control], values: Sequence, **fixed):
    """A validated ``settings_cls`` from the components' values (in ``controls`` order) and ``fixed``
    fields (e.g. the mapping). What the page shows is what runs: a value the settings' own logic
    would replace (a preset filling fields left at their defaults) is set back. Values are then
    parsed as the CLI parses them (``parse`` metadata: face boxes text -> array, window 0 -> None)."""
    if len(values) != len(controls):
        raise ValueError(f"{len(values)} values for {len(controls)} controls")
    kwargs = {c.name: c.from_component_value(v) for c, v in zip(controls, values)}
    kwargs.update(fixed)
    settings = settings_cls(**kwargs)
    for name, value in kwargs.items():
        if getattr(settings, name) != value:
            setattr(settings, name, value)
    if hasattr(settings, "validate"):
        settings = settings.validate() or settings
    by_name = {c.name: c for c in controls}
    for name, value in kwargs.items():
        c = by_name.get(name)
        if c is not None and c.parse is not None and value is not None:
            try:
                setattr(settings, name, c.parse(value))
            except InputError as exc:
                raise InputError(f"{c.label}: {exc}") from None
    return settings


def implied_fields(settings_cls, controls: Sequence[Control]) -> dict[str, list[str]]:
    """For every dropdown, the other fields its choices set through the settings' own logic (a
    sampling preset sets the steps and the motion guidance): the page updates them when it changes."""
    names = {c.name for c in controls}
    base = settings_cls()
    out = {}
    for c in controls:
        if c.kind != "dropdown":
            continue
        moved: set[str] = set()
        for choice in c.choices or ():
            try:
                other = settings_cls(**{c.name: choice})
            except Exception:  # a choice that needs other fields: nothing implied
                continue
            moved |= {n for n in names - {c.name} if _differs(getattr(other, n), getattr(base, n))}
        if moved:
            out[c.name] = [n for n in (x.name for x in controls) if n in moved]
    return out


def implied_values(
    settings_cls, controls: Sequence[Control], name: str, value, fields: Sequence[str]
) -> list:
    """What the controls ``fields`` show when the dropdown ``name`` is set to ``value``."""
    by_name = {c.name: c for c in controls}
    settings = settings_cls(**({name: value} if value is not None else {}))
    return [by_name[f].to_component_value(getattr(settings, f)) for f in fields]


def _differs(a, b) -> bool:
    try:
        return bool(a != b)
    except Exception:  # arrays
        return True
