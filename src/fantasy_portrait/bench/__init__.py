"""ExprBench: benchmark manifests, a method runner with caching, metrics and reports.

- :mod:`.manifest`: the manifest format and the built-in example over ``../shared/assets``.
- :mod:`.methods`: methods by name (repeat-portrait, copy-driver, ours, command templates).
- :mod:`.runner`: input preparation and cached, resumable method runs.
- :mod:`.metrics`, :mod:`.geometry`, :mod:`.landmarks`: SSIM, LMD, gaze MAE, APD, AED.
- :mod:`.frechet`, :mod:`.extractors`: FID and FVD from user-provided extractor weights.
- :mod:`.scoring`, :mod:`.report`: per-case scores, subset means, Markdown/CSV/JSON/PNG reports.

Definitions of every metric are in docs/bench.md.
"""
