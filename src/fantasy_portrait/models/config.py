"""Model configurations as data: the same classes build the 14B model and a 2-block test model.

Sizes follow SPEC §1 and §4. ``PRESETS`` holds the released sizes plus the golden tiny one; every
size is also inferred from a checkpoint's tensor shapes when loading (``loading.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# Motion feature layout per driving frame (SPEC §3): head pose, eye, emotion, mouth.
MOTION_PART_NAMES = ("head", "eye", "emotion", "mouth")
MOTION_PART_DIMS = (6, 6, 30, 512)
MOTION_FEATURE_DIM = sum(MOTION_PART_DIMS)  # 554

# Motion windows (SPEC §5): 4 driving frames per latent frame, one shared boundary token.
FRAMES_PER_LATENT = 4
VAE_SPATIAL_STRIDE = 8  # Wan2.1 VAE: 8x8 pixels per latent cell


@dataclass(frozen=True)
class LatentGeometry:
    """How pixels, latents and DiT tokens line up: the one place for the 4x temporal and 8x spatial
    VAE strides and the DiT's patch (Wan2.1: 1x2x2), so a token covers 16x16 pixels.

    Frame counts are causal: latent frame 0 is pixel frame 0, latent frame k >= 1 covers pixel frames
    4k-3 .. 4k, so F = 4k+1 pixel frames give k+1 latent frames.
    """

    temporal: int = FRAMES_PER_LATENT
    spatial: int = VAE_SPATIAL_STRIDE
    patch: tuple[int, int, int] = (1, 2, 2)

    @classmethod
    def from_transformer(cls, transformer) -> LatentGeometry:
        """The geometry of a built DiT (its patch size) with the Wan VAE's strides."""
        return cls(patch=tuple(int(p) for p in transformer.config.patch_size))

    @property
    def token_pixels(self) -> int:
        """Pixels per DiT token side (16 for Wan2.1)."""
        return self.spatial * self.patch[1]

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of ``num_frames`` (4k+1) pixel frames: k+1."""
        return (num_frames - 1) // self.temporal + 1

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames decoded from ``latent_frames`` latent frames: 4(T-1)+1."""
        return self.temporal * (latent_frames - 1) + 1

    def is_valid_frames(self, num_frames: int) -> bool:
        return num_frames >= 1 and (num_frames - 1) % self.temporal == 0

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) latent cells of a (height, width) frame."""
        return height // self.spatial, width // self.spatial

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, cols) DiT tokens per latent frame of a (height, width) frame."""
        return height // self.token_pixels, width // self.token_pixels


WAN_GEOMETRY = LatentGeometry()


@dataclass(frozen=True)
class ExpressionEncoderConfig:
    """Sizes of the expression-augmented encoder (released names: proj_model, mouth/emo_proj_model)."""

    token_dim: int = 2048
    part_dims: tuple[int, ...] = MOTION_PART_DIMS
    resampler_dim: int = 1280
    resampler_depth: int = 4
    resampler_heads: int = 20
    resampler_head_dim: int = 64
    mouth_queries: int = 16
    emotion_queries: int = 4
    ff_mult: int = 4

    @property
    def tokens_per_frame(self) -> int:
        return len(self.part_dims) + self.mouth_queries + self.emotion_queries

    @property
    def window_size(self) -> int:
        """Token slots per latent frame: 4 frames of tokens plus the shared boundary token (97)."""
        return FRAMES_PER_LATENT * self.tokens_per_frame + 1


@dataclass(frozen=True)
class WanConfig:
    """A Wan2.1 DiT in the original ``config.json`` vocabulary (what users' folders contain)."""

    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    in_dim: int = 36
    out_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    model_type: str = "i2v"
    cross_attn_norm: bool = True
    qk_norm: bool = True
    image_dim: int = 1280  # CLIP ViT-H/14 penultimate features, fixed for every I2V size

    @classmethod
    def from_dict(cls, data: dict) -> WanConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_original_config(self) -> dict:
        """The ``config.json`` of an original-layout Wan2.1 folder for this size."""
        return dict(
            model_type=self.model_type,
            patch_size=list(self.patch_size),
            text_len=512,
            in_dim=self.in_dim,
            dim=self.dim,
            ffn_dim=self.ffn_dim,
            freq_dim=self.freq_dim,
            text_dim=self.text_dim,
            out_dim=self.out_dim,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            window_size=[-1, -1],
            qk_norm=self.qk_norm,
            cross_attn_norm=self.cross_attn_norm,
            eps=self.eps,
        )

    def to_diffusers_kwargs(self) -> dict:
        """Keyword arguments of diffusers' ``WanTransformer3DModel`` for this configuration."""
        i2v = self.model_type == "i2v"
        return dict(
            patch_size=tuple(self.patch_size),
            num_attention_heads=self.num_heads,
            attention_head_dim=self.dim // self.num_heads,
            in_channels=self.in_dim,
            out_channels=self.out_dim,
            text_dim=self.text_dim,
            freq_dim=self.freq_dim,
            ffn_dim=self.ffn_dim,
            num_layers=self.num_layers,
            cross_attn_norm=self.cross_attn_norm,
            qk_norm="rms_norm_across_heads" if self.qk_norm else None,
            eps=self.eps,
            image_dim=self.image_dim if i2v else None,
            added_kv_proj_dim=self.dim if i2v else None,
        )


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    wan: WanConfig
    encoder: ExpressionEncoderConfig = field(default_factory=ExpressionEncoderConfig)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "wan2.1-i2v-14b-720p",
            "Wan2.1-I2V-14B-720P + FantasyPortrait (the released model)",
            WanConfig(),
        ),
        Preset(
            "wan2.1-i2v-14b-480p",
            "Wan2.1-I2V-14B-480P + FantasyPortrait (same architecture, 480p training)",
            WanConfig(),
        ),
        Preset(
            "wan2.1-i2v-1.3b",
            "1.3B-size image-to-video DiT (width 1536, 30 blocks) for the light variant",
            WanConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
        ),
        Preset(
            "tiny",
            "tiny random model of the golden fixtures (tests, CI)",
            WanConfig(dim=64, ffn_dim=128, num_heads=4, num_layers=2, text_dim=32),
            ExpressionEncoderConfig(
                token_dim=32, resampler_dim=64, resampler_depth=2, resampler_heads=4, resampler_head_dim=16
            ),
        ),
    )
}
