"""The precomputed training set: sharded safetensors files plus one index JSON (docs/training.md).

Training reads tensors only. :func:`fantasy_portrait.training.precompute.precompute_dataset` writes
the set; :class:`PrecomputedDataset` reads it; :class:`GlobalBatchPlan` decides, for every
optimizer step, which samples form the global batch and which process and accumulation micro-step
takes which of them, so the order depends on (seed, step) only, never on the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
FORMAT_NAME = "fantasy-portrait-train"
FORMAT_VERSION = 1
EMPTY_PROMPT_NAME = "empty_prompt.safetensors"

# Per-sample tensor names inside a shard (key = f"{sample_key}.{name}").
SAMPLE_TENSORS = ("latents", "image_latents", "clip", "text", "motion", "labels", "regions")


@dataclass
class SampleRecord:
    """One index entry: where a clip's tensors live and their shapes."""

    key: str
    shard: int
    num_frames: int
    latent_shape: tuple[int, int, int, int]
    num_faces: int
    caption: str = ""
    source: str = ""
    labels_digest: str = ""  # hash of the token label map (informational; maps may differ within a batch)

    @classmethod
    def from_dict(cls, data: dict) -> SampleRecord:
        return cls(
            key=str(data["key"]),
            shard=int(data["shard"]),
            num_frames=int(data["num_frames"]),
            latent_shape=tuple(int(v) for v in data["latent_shape"]),
            num_faces=int(data["num_faces"]),
            caption=str(data.get("caption", "")),
            source=str(data.get("source", "")),
            labels_digest=str(data.get("labels_digest", "")),
        )

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "shard": self.shard,
            "num_frames": self.num_frames,
            "latent_shape": list(self.latent_shape),
            "num_faces": self.num_faces,
            "caption": self.caption,
            "source": self.source,
            "labels_digest": self.labels_digest,
        }

    @property
    def bucket(self) -> tuple:
        """Samples in one batch must share this: latent shape and face count (label maps may differ:
        the model takes one map per sample)."""
        return (self.latent_shape, self.num_faces)


class ShardWriter:
    """Writes a precomputed set: samples go into shards of ``shard_size``, then ``close`` writes the index.

    Used by precompute and by code that makes training sets directly (synthetic data, tests).
    Every file is written under a temporary name and renamed into place; the index comes last, so a
    set without ``index.json`` is incomplete.
    """

    def __init__(self, root: str | os.PathLike, shard_size: int = 64, options: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_size = int(shard_size)
        self.options = dict(options or {})
        self.samples: list[dict] = []
        self.skipped: list[dict] = []
        self.shards: list[str] = []
        self._pending: dict[str, torch.Tensor] = {}
        self._count = 0
        self._keys: set[str] = set()
        self._text_dim: int | None = None

    def write_empty_prompt(self, text: torch.Tensor) -> None:
        """The empty prompt's embedding (L, D), used for prompt dropout."""
        _save_atomic({"text": text.reshape(-1, text.shape[-1]).contiguous()}, self.root / EMPTY_PROMPT_NAME)
        self._text_dim = int(text.shape[-1])

    def add(self, clip_id: str, tensors: dict[str, torch.Tensor], caption: str = "", source: str = "") -> str:
        """Add one sample (the SAMPLE_TENSORS; see PrecomputedDataset). Returns its key."""
        missing = [n for n in SAMPLE_TENSORS if n not in tensors]
        if missing:
            raise ValueError(f"sample {clip_id!r} lacks {missing}")
        key = re.sub(r"[^A-Za-z0-9_\-]", "_", clip_id) or "clip"
        base, n = key, 1
        while key in self._keys:
            n += 1
            key = f"{base}_{n}"
        self._keys.add(key)
        for name in SAMPLE_TENSORS:
            self._pending[f"{key}.{name}"] = tensors[name].detach().cpu().contiguous().clone()
        self.samples.append(
            SampleRecord(
                key=key,
                shard=len(self.shards),
                num_frames=int(tensors["motion"].shape[1]),
                latent_shape=tuple(int(v) for v in tensors["latents"].shape),
                num_faces=int(tensors["motion"].shape[0]),
                caption=caption,
                source=source,
                labels_digest=labels_digest(tensors["labels"]),
            ).to_dict()
        )
        self._count += 1
        if self._count >= self.shard_size:
            self._flush()
        return key

    def skip(self, clip_id: str, reason: str, **extra) -> None:
        self.skipped.append({"id": clip_id, "reason": reason, **extra})

    def _flush(self) -> None:
        if self._count:
            name = f"shard-{len(self.shards):05d}.safetensors"
            _save_atomic(self._pending, self.root / name)
            self.shards.append(name)
            self._pending, self._count = {}, 0

    def close(self, text_len: int = 512) -> Path:
        """Write the last shard and the index. Returns the index path."""
        if self._text_dim is None:
            raise ValueError("write_empty_prompt() was not called")
        self._flush()
        index = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "options": self.options,
            "text_dim": self._text_dim,
            "text_len": int(text_len),
            "empty_prompt": EMPTY_PROMPT_NAME,
            "shards": self.shards,
            "samples": self.samples,
            "skipped": self.skipped,
        }
        tmp = self.root / (INDEX_NAME + ".tmp")
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.root / INDEX_NAME)
        return self.root / INDEX_NAME


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def labels_digest(labels: torch.Tensor) -> str:
    arr = np.ascontiguousarray(labels.to(torch.int64).numpy())
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()[:16]


def _shard_readable(path: Path) -> set[str] | None:
    """The tensor names of a shard, or None if the file is missing or its header is unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except Exception as exc:  # truncated or garbage files raise various errors
        logger.warning("%s: unreadable shard (%s)", path, exc)
        return None


class PrecomputedDataset(torch.utils.data.Dataset):
    """Map-style dataset over a precomputed set.

    Item i is a dict: latents (16, T, h, w), image_latents (16, T, h, w), clip (257, 1280),
    text (text_len, D), motion (N, F, 554), labels (h/2, w/2) int64 token label map (0 background,
    i+1 face i), all float32 except labels. Samples whose shard is missing or unreadable, or lacks a
    tensor, are dropped when the set is opened; ``skipped`` lists them (with the clips precompute
    already skipped) and the count is logged.
    """

    def __init__(self, root: str | os.PathLike, text_len: int | None = None):
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise InputError(f"{index_path}: no training index (run `fantasy-portrait precompute` first)")
        try:
            index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{index_path}: cannot read the training index ({exc})") from exc
        if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
            raise InputError(f"{index_path}: not a fantasy-portrait training index")
        self.index = index
        self.shard_paths = [self.root / name for name in index["shards"]]
        self.skipped: list[dict] = list(index.get("skipped", []))
        shard_keys = [_shard_readable(p) for p in self.shard_paths]
        self.samples: list[SampleRecord] = []
        for entry in index["samples"]:
            rec = SampleRecord.from_dict(entry)
            keys = shard_keys[rec.shard] if 0 <= rec.shard < len(shard_keys) else None
            missing = [n for n in SAMPLE_TENSORS if keys is None or f"{rec.key}.{n}" not in keys]
            if missing:
                self.skipped.append(
                    {"id": rec.key, "reason": f"shard {rec.shard} unreadable or lacks {missing}"}
                )
                continue
            self.samples.append(rec)
        dropped = len(index["samples"]) - len(self.samples)
        if self.skipped:
            logger.warning(
                "%s: %d usable samples; %d skipped (%d at precompute, %d unreadable now)",
                self.root,
                len(self.samples),
                len(self.skipped),
                len(self.skipped) - dropped,
                dropped,
            )
        if not self.samples:
            raise InputError(f"{self.root}: the training set holds no readable samples")
        self.text_dim = int(index["text_dim"])
        self.text_len = int(text_len or index.get("text_len", 512))
        self._handles: dict[int, object] = {}
        self._empty_prompt: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def _handle(self, shard: int):
        # One open (memory-mapped) handle per shard and per worker process.
        from safetensors import safe_open

        handle = self._handles.get(shard)
        if handle is None:
            handle = safe_open(str(self.shard_paths[shard]), framework="pt")
            self._handles[shard] = handle
        return handle

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = {}  # file handles do not cross process boundaries
        return state

    def pad_text(self, text: torch.Tensor) -> torch.Tensor:
        """Zero-pad or cut (L, D) text embeddings to (text_len, D), as Wan pads prompts."""
        text = text.float()[: self.text_len]
        if text.shape[0] < self.text_len:
            text = torch.cat([text, text.new_zeros(self.text_len - text.shape[0], text.shape[1])])
        return text

    @property
    def empty_prompt(self) -> torch.Tensor:
        """Embedding of the empty prompt (text_len, D) float32, used for prompt dropout."""
        if self._empty_prompt is None:
            from safetensors.torch import load_file

            path = self.root / self.index.get("empty_prompt", EMPTY_PROMPT_NAME)
            try:
                self._empty_prompt = self.pad_text(load_file(str(path))["text"])
            except Exception as exc:
                raise InputError(f"{path}: cannot read the empty-prompt embedding ({exc})") from exc
        return self._empty_prompt

    def __getitem__(self, i: int) -> dict:
        rec = self.samples[i]
        f = self._handle(rec.shard)
        item = {name: f.get_tensor(f"{rec.key}.{name}") for name in SAMPLE_TENSORS}
        for name in ("latents", "image_latents", "clip", "motion"):
            item[name] = item[name].float()
        item["text"] = self.pad_text(item["text"])
        item["labels"] = item["labels"].to(torch.int64)
        item["index"] = i
        return item


def collate_samples(items: list[dict]) -> dict:
    """Stack a micro-batch. All items must share a bucket (see :class:`GlobalBatchPlan`)."""
    batch = {
        name: torch.stack([it[name] for it in items])
        for name in ("latents", "image_latents", "clip", "text", "motion")
    }
    batch["labels"] = torch.stack([it["labels"] for it in items])  # (B, h, w), one map per sample
    batch["num_faces"] = int(items[0]["motion"].shape[0])
    batch["index"] = torch.tensor([it["index"] for it in items])
    return batch


class GlobalBatchPlan:
    """Which samples each optimizer step uses, and how they are split.

    Per epoch the samples of each bucket are shuffled (seed, epoch) and cut into global batches of
    ``global_batch`` samples (a remainder shorter than that is left out for the epoch); the global
    batches of all buckets are then shuffled together. Step s uses batch s mod steps_per_epoch of
    epoch s // steps_per_epoch. Within a global batch, slot j belongs to accumulation micro-step
    j // (micro * world) and process (j // micro) mod world.
    """

    def __init__(self, buckets: list[tuple], global_batch: int, seed: int):
        self.global_batch = int(global_batch)
        self.seed = int(seed)
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(buckets):
            groups.setdefault(key, []).append(i)
        self.groups = [groups[k] for k in sorted(groups, key=repr)]
        self.steps_per_epoch = sum(len(g) // self.global_batch for g in self.groups)
        # Per epoch each group's remainder is left out (a different one every epoch, by the shuffle).
        self.left_out_per_epoch = sum(len(g) % self.global_batch for g in self.groups)
        if self.left_out_per_epoch:
            logger.warning(
                "%d of %d samples are left out of each epoch: %d groups of same-shaped samples do not "
                "divide into global batches of %d (multi-face clips batch only with equal label maps)",
                self.left_out_per_epoch,
                len(buckets),
                sum(1 for g in self.groups if len(g) % self.global_batch),
                self.global_batch,
            )
        if self.steps_per_epoch == 0:
            sizes = sorted((len(g) for g in self.groups), reverse=True)
            raise InputError(
                f"no group of same-shaped samples holds a whole global batch of {self.global_batch} "
                f"(largest groups: {sizes[:5]}); lower batch size, processes or accumulation"
            )
        self._cache: tuple[int, list[list[int]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[list[int]] = []
        for group in self.groups:
            order = [group[j] for j in rng.permutation(len(group))]
            for b in range(len(order) // self.global_batch):
                batches.append(order[b * self.global_batch : (b + 1) * self.global_batch])
        perm = rng.permutation(len(batches))
        batches = [batches[j] for j in perm]
        self._cache = (epoch, batches)
        return batches

    def global_batch_at(self, step: int) -> list[int]:
        """Dataset indices of the global batch of optimizer step ``step`` (0-based)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        return self.epoch_batches(epoch)[pos]

    @staticmethod
    def slots(micro: int, world: int, rank: int, accum_index: int) -> list[int]:
        """Global-batch slots of process ``rank`` in accumulation micro-step ``accum_index``."""
        start = (accum_index * world + rank) * micro
        return list(range(start, start + micro))


class MicroBatchSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches (lists of dataset indices) from step ``start_step`` on."""

    def __init__(
        self,
        plan: GlobalBatchPlan,
        micro: int,
        world: int,
        rank: int,
        accum: int,
        start_step: int,
        max_steps: int,
    ):
        self.plan, self.micro, self.world, self.rank, self.accum = plan, micro, world, rank, accum
        self.start_step, self.max_steps = start_step, max_steps

    def __iter__(self):
        for step in range(self.start_step, self.max_steps):
            batch = self.plan.global_batch_at(step)
            for a in range(self.accum):
                yield [batch[s] for s in self.plan.slots(self.micro, self.world, self.rank, a)]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.accum
