"""The pipeline's component interfaces: the Wan/PD-FGC components and the synthetic stand-ins conform."""

from __future__ import annotations

import pytest
import torch

from fantasy_portrait.pipeline.components import (
    ImageEncoder,
    MotionFeatureEncoder,
    VideoAutoencoder,
    check_components,
)


def test_released_components_conform(tiny_pipe):
    assert isinstance(tiny_pipe.vae, VideoAutoencoder)
    assert isinstance(tiny_pipe.clip, ImageEncoder)
    assert isinstance(tiny_pipe.motion_encoder, MotionFeatureEncoder)


def test_synthetic_stand_ins_conform_and_keep_the_vae_shapes():
    from fantasy_portrait.synthetic.latent import LinearLatent, PatchImageEncoder
    from fantasy_portrait.synthetic.motion_encoder import TinyMotionEncoder, TinyMotionEncoderConfig
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder

    latent = LinearLatent()
    assert isinstance(latent, VideoAutoencoder) and isinstance(PatchImageEncoder(), ImageEncoder)
    net = TinyMotionEncoder(TinyMotionEncoderConfig(channels=(8, 16, 16, 32), trunk_dim=64, head_hidden=64))
    assert isinstance(SyntheticMotionEncoder(net), MotionFeatureEncoder)
    video = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    z = latent.encode(video)
    assert z.shape == (1, latent.z_dim, 3, 2, 3)
    assert latent.decode(z).shape == video.shape


def test_a_component_missing_part_of_its_interface_is_named():
    from fantasy_portrait.synthetic.latent import PatchImageEncoder

    class NoStream:
        z_dim = 16

        def encode(self, video):
            return video

    with pytest.raises(TypeError, match="vae NoStream does not implement VideoAutoencoder.*encode_stream"):
        check_components(NoStream(), PatchImageEncoder(), None)
