"""The Gradio page of ``fantasy-portrait app``: :func:`build_app` returns a ``gr.Blocks``.

Layout: inputs (portrait, driving videos, model, examples) | faces (the numbered portrait, the tracked
driving faces, the mapping) | settings (one section per settings group, generated from the settings
metadata, and the presets) | run / cancel with progress | result, side-by-side, downloads.
Every handler turns errors into one-line messages in the page (``gr.Error``), never a stack trace.
Components carry ``elem_id`` s that the browser tests use.
"""

import dataclasses
import functools
import logging
import re

from ..errors import FantasyPortraitError, InputError
from .controls import (
    OPEN_GROUPS,
    Control,
    component_values,
    controls_from,
    grouped,
    implied_fields,
    implied_values,
    settings_from_values,
)
from .engine import AppEngine, RunCancelled, all_driving

logger = logging.getLogger(__name__)

TITLE = "FantasyPortrait"
INTRO = (
    "Animate every face of a portrait with the expressions, lips, eyes and head motion of driving videos. "
    "Upload a portrait and one or more driving videos (one video with several faces, or one video per "
    "face) or load an example; check the numbered faces and the mapping; set the controls; run."
)
CSS = "#faces img {object-fit: contain} .fp-note {font-size: 0.85em; opacity: 0.8}"


def one_line(message: str, controls: list[Control] = (), flags: dict[str, str] | None = None) -> str:
    """An error message as one line, with the CLI's flags named as the page's controls."""
    text = " ".join(str(message).split())
    for flag, label in (flags or {}).items():
        text = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", f"'{label}'", text)
    return text


def _flags(settings_cls, controls: list[Control]) -> dict[str, str]:
    labels = {c.name: c.label for c in controls}
    labels["mapping"] = "mapping"
    out = {}
    for f in dataclasses.fields(settings_cls):
        flag = f.metadata.get("flag")
        if flag and f.name in labels:
            out[flag] = labels[f.name]
    return out


def page_errors(flags: dict[str, str]):
    """Decorator: a handler's errors become one-line gr.Error messages (user errors as they are,
    anything else as 'internal error: ...' with the traceback in the server log only)."""
    import gradio as gr

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except FantasyPortraitError as exc:
                raise gr.Error(one_line(str(exc), flags=flags), print_exception=False) from None
            except Exception as exc:  # a bug: keep the page clean, the log complete
                logger.exception("app handler %s failed", fn.__name__)
                raise gr.Error(
                    one_line(f"internal error: {exc.__class__.__name__}: {exc}"), print_exception=False
                ) from None

        return inner

    return wrap


def _progress_report(progress):
    def report(fraction, desc):
        if isinstance(fraction, tuple):
            progress(fraction, desc=desc, unit="steps")
        else:
            progress(fraction, desc=desc)

    return report


def _file_paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, (list, tuple)) else [files]
    return [getattr(f, "name", f) for f in files]


def build_app(engine: AppEngine | None = None, settings_cls=None):
    """The app's ``gr.Blocks``. settings_cls: the settings dataclass whose fields become controls
    (default: the pipeline's AnimationSettings). A dropdown whose choices set other fields (the
    sampling preset) updates those controls when it changes."""
    import gradio as gr

    engine = engine or AppEngine()
    if settings_cls is None:
        from ..pipeline.settings import AnimationSettings as settings_cls
    controls = controls_from(settings_cls)
    flags = _flags(settings_cls, controls)
    errors = page_errors(flags)
    by_name = {c.name: k for k, c in enumerate(controls)}
    field_names = {f.name for f in dataclasses.fields(settings_cls)}
    models = engine.models()

    def value_of(values, name, default=None):
        k = by_name.get(name)
        return default if k is None else controls[k].from_component_value(values[k])

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        preview_state = gr.State(None)
        example_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    example = gr.Dropdown(
                        engine.example_names(),
                        value=engine.example_names()[0],
                        label="example",
                        elem_id="example",
                        scale=3,
                    )
                    load_example = gr.Button("Load example", elem_id="load-example", scale=1)
                portrait = gr.Image(type="filepath", label="portrait", elem_id="portrait", height=260)
                driving = gr.File(
                    file_count="multiple",
                    file_types=["video"],
                    label="driving video(s): one with N faces, or one per face",
                    elem_id="driving",
                )
                model = gr.Radio(
                    [(label, key) for key, label in models.items()],
                    value=next(iter(models)),
                    label="model",
                    elem_id="model",
                )
                find = gr.Button("Find faces", elem_id="find-faces")
            with gr.Column(scale=1):
                faces = gr.Image(
                    label="portrait faces (numbered left to right) and their drivers",
                    elem_id="faces",
                    interactive=False,
                    height=300,
                )
                tracks = gr.Video(label="tracked driving faces", elem_id="tracks", interactive=False)
                with gr.Row():
                    mapping = gr.Textbox(
                        label="mapping: driving face -> portrait face",
                        placeholder="e.g. 0:1,1:0 (empty: left to right)",
                        elem_id="mapping",
                        scale=3,
                    )
                    apply_mapping = gr.Button("Apply mapping", elem_id="apply-mapping", scale=1)

                @gr.render(inputs=preview_state)
                def mapping_choices(p):
                    # One list per driving face: the portrait face it drives (or unused). Picking a
                    # face another driver has swaps the two; the text box above stays the source.
                    if p is None:
                        return
                    drivers = all_driving(p.plan)
                    current = dict(item.split(":") for item in p.mapping_text.split(","))
                    options = [(f"portrait face {f.index}", str(f.index)) for f in p.plan.portrait_faces]
                    with gr.Row():
                        lists = [
                            gr.Dropdown(
                                [*options, ("unused", "-")],
                                value=current[str(d.index)],
                                label=f"driver {d.index} ({d.source.name})",
                                elem_id=f"map-driver-{d.index}",
                                min_width=140,
                                interactive=True,
                            )
                            for d in drivers
                        ]

                    def picker(k):
                        def pick(value):
                            pairs = {str(d.index): current[str(d.index)] for d in drivers}
                            mine = str(drivers[k].index)
                            for other, face in pairs.items():
                                if other != mine and face == value and value != "-":
                                    pairs[other] = pairs[mine]  # swap with the driver that had it
                            pairs[mine] = value
                            return ",".join(f"{d}:{f}" for d, f in pairs.items())

                        return pick

                    for k, box in enumerate(lists):
                        box.input(picker(k), box, mapping, queue=False).then(
                            do_remap, {preview_state, mapping}, remap_outputs, concurrency_id="faces"
                        )

                faces_info = gr.Textbox(label="faces", lines=4, interactive=False, elem_id="faces-info")
        remap_outputs = [faces, tracks, mapping, faces_info, preview_state]
        made = {}
        for group, items in grouped(controls).items():
            with gr.Accordion(group, open=group in OPEN_GROUPS, elem_id=f"group-{group}"):
                with gr.Row():
                    for c in items:
                        made[c.name] = _component(gr, c)
        components = [made[c.name] for c in controls]  # in the order of ``controls``
        with gr.Row():
            run = gr.Button("Run", variant="primary", elem_id="run")
            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
        with gr.Column(elem_id="outputs"):
            status = gr.Textbox(label="status", interactive=False, elem_id="status")
            with gr.Row():
                result = gr.Video(label="result", elem_id="result", interactive=False)
                sbs = gr.Video(label="side by side", elem_id="side-by-side", interactive=False)
        with gr.Row():
            downloads = gr.File(
                label="downloads", file_count="multiple", elem_id="downloads", interactive=False
            )
            summary = gr.JSON(label="run summary", elem_id="summary")

        # ------------------------------------------------------------------------------ handlers
        # Handlers take their inputs as one dict (component -> value): the settings controls are many
        # and their number depends on the settings class.
        def settings_values(data):
            return [data[c] for c in components]

        def preview_of(data, progress):
            values = settings_values(data)
            return engine.preview(
                data[portrait],
                _file_paths(data[driving]),
                mapping=data[mapping],
                face_boxes=value_of(values, "face_boxes"),
                fps=value_of(values, "fps", 25.0),
                max_frames=value_of(values, "max_frames"),
                report=_progress_report(progress),
            )

        def preview_outputs_of(p):
            return {
                faces: str(p.portrait_png),
                tracks: str(p.drivers_mp4),
                mapping: p.mapping_text,
                faces_info: p.summary,
                preview_state: p,
            }

        @errors
        def do_preview(data, progress=gr.Progress()):  # noqa: B008 - gradio's progress injection
            return preview_outputs_of(preview_of(data, progress))

        @errors
        def do_upload_preview(data, progress=gr.Progress()):  # noqa: B008
            if data[portrait] is None or not _file_paths(data[driving]):
                return {faces: gr.skip()}  # wait for the other input
            return preview_outputs_of(preview_of(data, progress))

        @errors
        def do_remap(data):
            if data[preview_state] is None:
                raise InputError("find the faces first")
            try:
                p = engine.remap(data[preview_state], data[mapping])
            except FantasyPortraitError as exc:  # a message; the preview stays as it was
                gr.Warning(one_line(str(exc), flags=flags))
                return {faces: gr.skip()}
            return {
                faces: str(p.portrait_png),
                tracks: str(p.drivers_mp4),
                mapping: p.mapping_text,
                faces_info: p.summary,
                preview_state: p,
            }

        @errors
        def do_load_example(data):
            e = engine.example(data[example])
            values = component_values(controls, overrides=e.settings)
            out = {portrait: str(e.portrait), driving: [str(d) for d in e.driving], model: e.model}
            out.update({mapping: "", example_state: e})
            out.update(dict(zip(components, values)))
            return out

        def implied_handler(name, fields):
            @errors
            def do_implied(value):
                return implied_values(settings_cls, controls, name, value, fields)

            return do_implied

        @errors
        def do_run(data, request: gr.Request, progress=gr.Progress()):  # noqa: B008
            drivers = _file_paths(data[driving])
            mapping_value = (data[mapping] or "").strip()
            fixed = {"mapping": mapping_value or None}
            if "progress" in field_names:  # progress goes to the page, not to tqdm bars in the log
                fixed["progress"] = False
            settings = settings_from_values(settings_cls, controls, settings_values(data), **fixed)
            ex = data[example_state]
            truth = None
            default_mapping = ",".join(f"{i}:{i}" for i in range(len(ex.driving))) if ex else ""
            if (
                ex is not None
                and ex.truth is not None
                and str(ex.portrait) == str(data[portrait])
                and [str(d) for d in ex.driving] == drivers
                and mapping_value in ("", default_mapping)
            ):
                truth = ex.truth
            try:
                out = engine.run(
                    data[model],
                    data[portrait],
                    drivers,
                    settings,
                    session=getattr(request, "session_hash", "") or "",
                    report=_progress_report(progress),
                    truth=truth,
                )
            except RunCancelled as exc:
                return {result: None, sbs: None, downloads: None, summary: None, status: one_line(str(exc))}
            s = out.summary
            text = (
                f"done: {s['num_frames']} frames, {s['width']}x{s['height']}, {s['fps']:g} fps, "
                f"{len(s['faces'])} face(s), {s['wall_seconds']:.1f} s"
            )
            return {
                result: str(out.result),
                sbs: str(out.side_by_side),
                downloads: [str(f) for f in out.files],
                summary: s,
                status: text,
            }

        def do_cancel(request: gr.Request):
            # A message only: the status box belongs to the run, which reports where it stopped.
            found = engine.cancel(getattr(request, "session_hash", "") or "")
            gr.Info("cancelling: the run stops after its current step" if found else "no run to cancel")

        def clear_example():
            return None, ""

        preview_inputs = {portrait, driving, mapping, *components}
        preview_outputs = [faces, tracks, mapping, faces_info, preview_state]
        find.click(do_preview, preview_inputs, preview_outputs, concurrency_id="faces", concurrency_limit=1)
        for comp in (portrait, driving):
            comp.upload(clear_example, None, [example_state, mapping]).then(
                do_upload_preview, preview_inputs, preview_outputs, concurrency_id="faces"
            )
        # In the faces queue too, so a mapping change is applied after any preview still pending.
        for trigger in (apply_mapping.click, mapping.submit):
            trigger(do_remap, {preview_state, mapping}, remap_outputs, concurrency_id="faces")
        load_example.click(
            do_load_example, {example}, [portrait, driving, model, mapping, example_state, *components]
        ).success(do_preview, preview_inputs, preview_outputs, concurrency_id="faces")
        for name, fields in implied_fields(settings_cls, controls).items():
            made[name].input(
                implied_handler(name, fields), made[name], [made[f] for f in fields], queue=False
            )
        run.click(
            do_run,
            {model, portrait, driving, mapping, example_state, *components},
            [result, sbs, downloads, summary, status],
            concurrency_id="device",
            concurrency_limit=1,
        )
        cancel.click(do_cancel, None, None, queue=False)
    demo.queue(default_concurrency_limit=1)
    demo.fantasy_portrait_engine = engine  # for launchers and tests
    demo.fantasy_portrait_css = CSS
    return demo


def _component(gr, c: Control):
    common = dict(label=c.label, info=c.info, elem_id=c.elem_id, value=c.to_component_value(c.default))
    if c.kind == "checkbox":
        return gr.Checkbox(**common)
    if c.kind == "dropdown":
        return gr.Dropdown(list(c.choices), allow_custom_value=False, **common)
    if c.kind == "slider":
        step = 1 if c.value_type is int else (c.maximum - c.minimum) / 100
        return gr.Slider(minimum=c.minimum, maximum=c.maximum, step=step, **common)
    if c.kind == "number":
        extra = {"precision": 0} if c.value_type is int else {}
        if c.minimum is not None:
            extra["minimum"] = c.minimum
        if c.maximum is not None:
            extra["maximum"] = c.maximum
        return gr.Number(**common, **extra)
    return gr.Textbox(**common)


def launch(demo, *, server_name: str | None = None, port: int | None = None, share: bool = False, **kwargs):
    """Launch the page (Gradio's queue: one run at a time on the device)."""
    engine = getattr(demo, "fantasy_portrait_engine", None)
    allowed = engine.allowed_paths() if engine is not None else None
    return demo.launch(
        server_name=server_name,
        server_port=port,
        share=share,
        show_error=True,
        allowed_paths=allowed,
        css=getattr(demo, "fantasy_portrait_css", None),
        **kwargs,
    )
