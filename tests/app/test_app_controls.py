"""Controls generated from the settings dataclass's metadata (no browser, no gradio needed)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest

from fantasy_portrait.app.controls import (
    component_values,
    controls_from,
    grouped,
    implied_fields,
    implied_values,
    settings_from_values,
)
from fantasy_portrait.errors import InputError


def opt(default, help, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class Toy:
    """A stand-in settings class with the same metadata keys as pipeline/settings.py."""

    mapping: str | None = opt(None, "pairs", flag="--map", group="faces", type=str)
    steps: int = opt(30, "denoising steps", flag="--steps", group="sampling", type=int, min=1)
    strength: float = opt(1.0, "motion strength", flag="--strength", group="motion", type=float, min=0, max=2)
    mode: str | None = opt(None, "memory mode", flag="--memory", group="memory", type=str, choices=("a", "b"))
    batch: bool = opt(True, "one after the other", flag="--sequential", group="memory", invert=True)
    boxes: object = opt(None, "face boxes", flag="--face-boxes", group="faces", type=str, parse=lambda t: [t])
    limit: int | None = opt(None, "at most this many", flag="--max-frames", group="video", type=int, min=1)
    progress: bool = opt(True, "no progress bars", flag="--no-progress", group="output", invert=True)
    loras: tuple = opt((), "FILE[:SCALE], repeatable", flag="--lora", group="speed", type=str, append=True)
    preset: str | None = opt(
        None, "sampling preset", flag="--preset", group="speed", choices=("fast", "slow")
    )

    def __post_init__(self):  # as the real settings: a preset fills the fields left at their defaults
        if self.preset and self.steps == 30:
            self.steps = {"fast": 4, "slow": 60}[self.preset]

    def validate(self):
        if self.steps < 1:
            raise InputError(f"--steps must be >= 1, got {self.steps}")
        return self


def test_every_field_becomes_a_control_of_the_right_kind():
    controls = {c.name: c for c in controls_from(Toy)}
    assert "mapping" not in controls and "progress" not in controls  # the app sets these itself
    kinds = {name: c.kind for name, c in controls.items()}
    assert kinds == {
        "steps": "number",
        "strength": "slider",
        "mode": "dropdown",
        "batch": "checkbox",
        "boxes": "text",
        "limit": "number",
        "loras": "text",
        "preset": "dropdown",
    }
    assert controls["strength"].minimum == 0 and controls["strength"].maximum == 2
    assert controls["mode"].choices == ("a", "b")
    assert controls["batch"].label == "sequential" and controls["steps"].label == "steps"
    assert controls["steps"].info == "denoising steps"
    assert list(grouped(controls.values())) == ["sampling", "motion", "memory", "faces", "video", "speed"]


def test_a_field_added_later_appears_without_changing_the_app():
    @dataclass
    class Later(Toy):
        lora_scale: float = opt(0.8, "LoRA strength", flag="--lora-scale", group="lora", min=0, max=1)
        cache: bool = opt(False, "reuse block outputs", flag="--cache", group="acceleration")

    controls = {c.name: c for c in controls_from(Later)}
    assert controls["lora_scale"].kind == "slider" and controls["lora_scale"].group == "lora"
    assert controls["cache"].kind == "checkbox" and controls["cache"].group == "acceleration"
    values = component_values(list(controls.values()), overrides={"lora_scale": 0.25, "cache": True})
    s = settings_from_values(Later, list(controls.values()), values)
    assert s.lora_scale == 0.25 and s.cache is True


def test_values_round_trip_through_the_components():
    controls = controls_from(Toy)
    start = Toy(steps=7, strength=1.5, mode="b", batch=False, limit=9)
    values = component_values(controls, start)
    by = dict(zip([c.name for c in controls], values))
    assert by["batch"] is True  # "sequential" is ticked for batch=False
    assert by["boxes"] == "" and by["mode"] == "b"
    back = settings_from_values(Toy, controls, values, mapping="0:1")
    assert back == dataclasses.replace(start, mapping="0:1")


def test_component_values_are_converted_and_checked():
    controls = controls_from(Toy)
    values = component_values(controls)
    k = {c.name: i for i, c in enumerate(controls)}
    values[k["steps"]] = 12.0  # gr.Number gives floats
    values[k["limit"]] = None  # an empty optional box is None
    values[k["boxes"]] = "1,2,3,4"
    s = settings_from_values(Toy, controls, values)
    assert s.steps == 12 and isinstance(s.steps, int) and s.limit is None
    assert s.boxes == ["1,2,3,4"]  # parsed as the CLI parses it
    values[k["steps"]] = 2.5
    with pytest.raises(InputError, match="steps: must be a whole number"):
        settings_from_values(Toy, controls, values)
    values[k["steps"]] = None
    with pytest.raises(InputError, match="steps: a value is needed"):
        settings_from_values(Toy, controls, values)
    values[k["steps"]] = 0
    with pytest.raises(InputError, match="--steps must be >= 1"):
        settings_from_values(Toy, controls, values)


def test_repeatable_flags_are_items_of_one_text_box():
    controls = controls_from(Toy)
    k = {c.name: i for i, c in enumerate(controls)}
    values = component_values(controls, Toy(loras=("a.safetensors:0.5", "b.safetensors")))
    assert values[k["loras"]] == "a.safetensors:0.5; b.safetensors"
    values[k["loras"]] = " a.safetensors:0.5\nb.safetensors ;; "
    assert settings_from_values(Toy, controls, values).loras == ("a.safetensors:0.5", "b.safetensors")


def test_a_preset_dropdown_updates_the_fields_it_sets_and_the_page_value_wins():
    controls = controls_from(Toy)
    assert implied_fields(Toy, controls) == {"preset": ["steps"]}
    assert implied_values(Toy, controls, "preset", "fast", ["steps"]) == [4]
    assert implied_values(Toy, controls, "preset", None, ["steps"]) == [30]
    k = {c.name: i for i, c in enumerate(controls)}
    values = component_values(controls)
    values[k["preset"]] = "fast"
    values[k["steps"]] = 30  # the user set 30 after choosing the preset: what the page shows runs
    assert settings_from_values(Toy, controls, values).steps == 30


def test_the_pipeline_settings_give_controls():
    from fantasy_portrait.pipeline import settings

    controls = controls_from(settings.AnimationSettings)
    names = {c.name for c in controls}
    assert {"num_steps", "motion_guidance", "seed", "max_size"} <= names
    defaults = settings_from_values(settings.AnimationSettings, controls, component_values(controls))
    expected = settings.AnimationSettings()
    for c in controls:
        got, want = getattr(defaults, c.name), getattr(expected, c.name)
        if c.parse is not None and want is not None:
            want = c.parse(want) if not isinstance(want, np.ndarray) else want
        assert got == want or (got is None and want is None), c.name
