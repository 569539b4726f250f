"""Compilation of the repeated block and the attention backend, through diffusers' extension points.

- :func:`compile_blocks`: regional compilation (``transformer.compile_repeated_blocks``, i.e.
  ``torch.compile`` on each of the 40 identical blocks, which share one compiled graph): compile time
  of one block instead of the whole model; run after hooks (caches, fp8 storage, offloading) are in
  place so they are traced with the block.
- :func:`attention`: a context running every attention (self, cross, image and motion attention)
  on one of diffusers' backends: ``native`` (torch SDPA), ``flash`` (flash-attn), ``sage``
  (SageAttention). A backend whose package is missing is a one-line error before any work starts.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from ..errors import InputError

logger = logging.getLogger(__name__)

ATTENTION_BACKENDS = {"native": "native", "flash": "flash", "sage": "sage"}
_PACKAGES = {
    "flash": "flash-attn (pip install flash-attn)",
    "sage": "sageattention (pip install sageattention)",
}


def compile_blocks(transformer, **compile_kwargs) -> int:
    """torch.compile every DiT block (one graph for the repeated block); returns how many were compiled."""
    names = set(getattr(transformer, "_repeated_blocks", None) or ())
    block_class = type(transformer.blocks[0]).__name__
    if block_class in names:
        transformer.compile_repeated_blocks(**compile_kwargs)
    else:  # the same regional compilation for a block class the model does not list
        for block in transformer.blocks:
            block.compile(**compile_kwargs)
    logger.info(
        "compiled %d %s blocks (%s)", len(transformer.blocks), block_class, compile_kwargs or "defaults"
    )
    return len(transformer.blocks)


def check_attention_backend(name: str) -> str:
    """diffusers' backend name for ``name``; InputError (one line) if unknown or not installed."""
    if name not in ATTENTION_BACKENDS:
        raise InputError(f"--attention {name!r}: choose from {', '.join(ATTENTION_BACKENDS)}")
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    backend = AttentionBackendName(ATTENTION_BACKENDS[name])
    try:
        _check_attention_backend_requirements(backend)
    except (RuntimeError, ImportError) as exc:
        raise InputError(
            f"--attention {name}: the backend needs {_PACKAGES.get(name, 'its package')}, which is not "
            f"installed or too old ({str(exc).splitlines()[0]})"
        ) from exc
    return backend.value


@contextmanager
def attention(name: str | None):
    """Run the attention inside on backend ``name`` (None or 'native': torch SDPA, the default)."""
    if not name or name == "native":
        yield
        return
    from diffusers.models.attention_dispatch import attention_backend

    with attention_backend(check_attention_backend(name)):
        yield
