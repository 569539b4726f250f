"""Which video tokens a rank holds, and how the motion attention follows that split (pure functions).

diffusers' context parallelism splits the transformer's video tokens along the sequence into equal
contiguous pieces, one per rank (``EquipartitionSharder``: ``tensor.chunk``; the "anything" modes
use ``tensor.tensor_split``, also contiguous). The sequence is frame-major: token ``p`` belongs to
latent frame ``p // hw`` and token-grid cell ``p % hw`` (``hw`` tokens per latent frame).

The motion attention is query-local: a token's keys and values are the motion window of its latent
frame (replicated on every rank) and, with several faces, its cell's label picks which face's slots
it sees. So a rank computes the motion attention of its own tokens alone, no collective, once it
knows its token range: the range is cut into at most three pieces (a partial frame, whole frames,
a partial frame), each attending to its frames' windows with the label map restricted to its cells.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenRange:
    """The contiguous video tokens ``[start, stop)`` of a sequence of ``total`` that one rank holds."""

    start: int
    stop: int
    total: int

    def __post_init__(self):
        if not 0 <= self.start <= self.stop <= self.total:
            raise ValueError(
                f"token range [{self.start}, {self.stop}) is not inside a sequence of {self.total}"
            )

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def is_full(self) -> bool:
        return self.start == 0 and self.stop == self.total


@dataclass(frozen=True)
class FramePiece:
    """Part of a token range that lies in whole latent frames, or inside one latent frame.

    frames: latent frames [first, last + 1) it covers; cells: the token-grid cells [a, b) it covers in
    each of those frames (all cells when it spans several frames); local: its positions [i, j) in the
    rank's local sequence.
    """

    frames: tuple[int, int]
    cells: tuple[int, int]
    local: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return self.frames[1] - self.frames[0]

    @property
    def num_cells(self) -> int:
        return self.cells[1] - self.cells[0]


def frame_pieces(tokens: TokenRange, per_frame: int) -> list[FramePiece]:
    """Cut ``tokens`` into pieces that each cover whole latent frames or lie inside one frame.

    per_frame: tokens per latent frame (the token grid's cell count). At most three pieces: the tail of
    the first frame, the whole frames in between, the head of the last frame.
    """
    if per_frame < 1 or tokens.total % per_frame:
        raise ValueError(f"a sequence of {tokens.total} tokens is not made of frames of {per_frame}")
    pieces = []
    pos = tokens.start
    while pos < tokens.stop:
        frame, cell = divmod(pos, per_frame)
        whole = (tokens.stop - pos) // per_frame if cell == 0 else 0
        if whole:
            end = pos + whole * per_frame
            pieces.append(
                FramePiece((frame, frame + whole), (0, per_frame), (pos - tokens.start, end - tokens.start))
            )
        else:
            end = min(tokens.stop, (frame + 1) * per_frame)
            pieces.append(
                FramePiece(
                    (frame, frame + 1), (cell, cell + end - pos), (pos - tokens.start, end - tokens.start)
                )
            )
        pos = end
    return pieces


def shard_bounds(length: int, parts: int, index: int) -> tuple[int, int]:
    """Bounds of piece ``index`` when ``length`` items are cut into ``parts`` contiguous pieces the way
    ``torch.tensor_split`` does (equal pieces when ``parts`` divides ``length``, as ``torch.chunk``)."""
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"piece {index} of {parts}")
    size, extra = divmod(length, parts)
    start = index * size + min(index, extra)
    return start, start + size + (index < extra)
