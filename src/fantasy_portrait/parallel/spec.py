"""``--parallel`` as data: how one clip is spread over several processes (GPUs).

``ulysses=N``: Ulysses sequence parallelism (an all-to-all swaps the sequence split for a head split
around every self-attention). ``ring=N``: ring attention (every rank's keys/values visit every other
rank). Both together: a ring x Ulysses grid (diffusers' unified attention). ``cfg=N``: the guidance
branches (motion on / off, negative text) of each step are shared out over N groups of processes.
The processes needed are ``ulysses * ring * cfg``; ranks are laid out cfg-major, then ring, then
Ulysses (neighbouring ranks, which share the fastest links, do the all-to-all).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

KINDS = ("ulysses", "ring", "cfg")


@dataclass(frozen=True)
class ParallelSpec:
    ulysses: int = 1
    ring: int = 1
    cfg: int = 1

    def __post_init__(self):
        for kind in KINDS:
            value = getattr(self, kind)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"--parallel: {kind} must be a whole number >= 1, got {value!r}")

    @classmethod
    def parse(cls, text: str | None) -> ParallelSpec | None:
        """'ulysses=4', 'ring=2', 'ulysses=2,ring=2', 'cfg=2,ulysses=4'; None, '' or 'none' -> None."""
        if text is None or not str(text).strip() or str(text).strip().lower() in ("none", "off", "1"):
            return None
        values = {}
        for part in str(text).split(","):
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in KINDS:
                raise InputError(
                    f"--parallel: cannot read {part.strip()!r}; use e.g. ulysses=4, ring=2, "
                    "ulysses=2,ring=2 or cfg=2,ulysses=4"
                )
            if name in values:
                raise InputError(f"--parallel: {name} given twice in {text!r}")
            try:
                values[name] = int(value)
            except ValueError:
                raise InputError(
                    f"--parallel: {name} must be a whole number, got {value.strip()!r}"
                ) from None
        spec = cls(**values)
        return spec if spec.world_size > 1 else None

    @property
    def context_degree(self) -> int:
        """Processes that share one transformer call's video tokens (ring x Ulysses)."""
        return self.ulysses * self.ring

    @property
    def world_size(self) -> int:
        return self.context_degree * self.cfg

    def __str__(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in KINDS if getattr(self, k) > 1]
        return ",".join(parts) or "none"

    def check_heads(self, heads: int) -> None:
        """Ulysses gives each rank heads / ulysses attention heads: the degree must divide the head count."""
        if heads % self.ulysses:
            raise InputError(
                f"--parallel ulysses={self.ulysses}: the model has {heads} attention heads, which do not "
                f"split into {self.ulysses}; use a Ulysses degree that divides {heads} (with ring for the rest)"
            )

    def check_tokens(self, tokens: int, what: str = "a transformer call") -> None:
        """The video tokens of every transformer call must split evenly over the context-parallel ranks."""
        if self.context_degree > 1 and tokens % self.context_degree:
            raise InputError(
                f"--parallel {self}: {what} has {tokens} video tokens, which do not split evenly into "
                f"{self.context_degree}; change --max-size, --window-frames or the degree"
            )
