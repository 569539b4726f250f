"""One clip over several GPUs (diffusers' context parallelism, CFG parallel); see docs/scale.md."""

from .sharding import FramePiece, TokenRange, frame_pieces, shard_bounds
from .spec import ParallelSpec

__all__ = ["FramePiece", "ParallelSpec", "TokenRange", "frame_pieces", "shard_bounds"]
