"""The optional tiny model fine-tuned on the part-disentangled synthetic motion encoder's features
(benchmarks/controls.md, "with a part-disentangled encoder")."""

from __future__ import annotations

import torch

from fantasy_portrait.synthetic.motion_encoder import load_motion_encoder
from fantasy_portrait.synthetic.tiny_model import (
    SHIPPED_MODELS,
    build_pipeline,
    load_tiny_model,
    motion_encoder_digest,
    resolve_weights,
    shipped_weight_files,
)


def test_disentangled_model_records_and_runs_with_the_disentangled_encoder():
    path = resolve_weights("disentangled")
    assert path == SHIPPED_MODELS["disentangled"] and path.is_file()
    files = shipped_weight_files()
    assert path in files and sum(f.stat().st_size for f in files) <= 25e6  # the shipped weights' budget
    _, _, _, extra = load_tiny_model(path)
    assert extra["motion_encoder"] == "disentangled"
    assert extra["motion_encoder_sha256"] == motion_encoder_digest("disentangled")
    assert extra["motion_encoder_sha256"] != motion_encoder_digest()  # not the shipped default's features
    # build_pipeline picks the recorded encoder by itself (no motion_encoder argument).
    pipe = build_pipeline(path)
    ours = pipe.motion_encoder.network.state_dict()
    want = load_motion_encoder("disentangled").state_dict()
    assert ours.keys() == want.keys()
    assert all(torch.equal(ours[k], want[k]) for k in want)


def test_demo_runs_a_model_with_the_encoder_it_was_trained_on(tmp_path, monkeypatch):
    """run_demo loads the models itself (for its latent rows) and must still give the pipeline the
    motion encoder the weight file records, not the default one."""
    import fantasy_portrait.synthetic.tiny_model as tiny_model
    from fantasy_portrait.synthetic.demo import run_demo

    class Built(Exception):
        pass

    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr(tiny_model, "build_pipeline", spy)
    for weights in (SHIPPED_MODELS["disentangled"], None):
        seen.clear()
        try:
            run_demo(tmp_path / str(weights is None), weights=weights, progress=False)
        except Built:
            pass
        assert seen["motion_encoder"] == load_tiny_model(weights)[3].get("motion_encoder")
    assert load_tiny_model(SHIPPED_MODELS["disentangled"])[3]["motion_encoder"] == "disentangled"
