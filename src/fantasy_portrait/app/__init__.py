"""``fantasy-portrait app``: a Gradio page for people who do not use a terminal (docs/app.md).

- :mod:`.engine`: previews and runs without the page (loaded pipelines, run lock, cancellation);
- :mod:`.controls`: the settings controls generated from the settings dataclass's metadata;
- :mod:`.examples`: the built-in synthetic example and example folders for the released weights;
- :mod:`.media`: the face preview and side-by-side videos;
- :mod:`.ui`: the page (imports gradio, the ``[app]`` extra).
"""

from .engine import AppEngine, RunCancelled

__all__ = ["AppEngine", "RunCancelled", "build_app", "launch"]


def build_app(*args, **kwargs):
    """The ``gr.Blocks`` page (see :func:`fantasy_portrait.app.ui.build_app`)."""
    from .ui import build_app as _build

    return _build(*args, **kwargs)


def launch(*args, **kwargs):
    from .ui import launch as _launch

    return _launch(*args, **kwargs)
