#!/usr/bin/env python
"""Train the tiny synthetic FantasyPortrait shipped in src/fantasy_portrait/assets/ (CPU).

    python scripts/train_synthetic_portrait.py --out runs/synthetic_portrait --samples 600 --seed 0 \
        --threads 1 --install

1. renders ``--samples`` two-character cross-reenactment cases (``synthetic.cases``; case seeds
   100000 + i, never the demo's seeds),
2. fits the linear latent (``synthetic.latent``) on the ground-truth clips of the first 128 cases,
3. writes the precomputed training set with the project's ShardWriter, each sample made the way
   the pipeline makes its inputs (image condition = [portrait, zero frames]; motion = the synthetic
   motion encoder on the drivers' 224-px PD-FGC crops, five points jittered by 2% of the eye distance),
4. trains with the project's Trainer (configs/synthetic_portrait.yaml). There is no pretrained Wan
   base in this world, so the whole DiT is trained together with the motion parts and the
   expression encoder (the trainer itself freezes the base; this script makes everything trainable),
5. with ``--install``, writes the EMA weights of the last checkpoint + latent to
   src/fantasy_portrait/assets/synthetic_portrait.safetensors.

Interrupting and re-running continues from the latest checkpoint (the set is reused if complete).

Ablation (issue 6, the paper's Table 2 at small scale): ``--variant no-mask`` trains without masked
motion attention (every video token sees both faces' motion), ``--variant no-augment`` without the
expression augmentation (the encoder's mouth and emotion resamplers removed: 4 part tokens per frame);
give each variant its own ``--out`` and the same set (``--set``) and steps, and ``--install-to`` a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CASE_SEED_BASE = 100_000
VARIANTS = ("full", "no-mask", "no-augment")


def variant_models(variant: str, seed: int):
    """(transformer, expression encoder) of an ablation variant, randomly initialised with ``seed``."""
    import dataclasses

    from fantasy_portrait.synthetic.tiny_model import TINY_ENCODER, build_models

    encoder = TINY_ENCODER
    if variant == "no-augment":
        encoder = dataclasses.replace(TINY_ENCODER, mouth_queries=0, emotion_queries=0)
    return build_models(encoder=encoder, seed=seed)


def load_trained(path: Path, transformer, encoder) -> None:
    """Load a trainer weight file (keys prefixed transformer. / encoder.) into the two modules."""
    from safetensors.torch import load_file

    weights = load_file(str(path))
    missing = []
    for prefix, module in (("transformer.", transformer), ("encoder.", encoder)):
        own = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        missing += module.load_state_dict(own, strict=False).missing_keys
    if missing:
        raise SystemExit(f"{path}: lacks {missing[:5]}")


def variant_overrides(variant: str) -> list[str]:
    return ["model.masked_motion=false"] if variant == "no-mask" else []


CACHE_PART = 100  # cases per file of the rendered-case cache


class _NoLatent:
    """Stands in for the latent while the latent-free tensors of a case are cached (see render_cases)."""

    def encode(self, video):
        return torch.zeros(1, 0)

    def encode_stream(self, chunks):
        return torch.zeros(1, 0)


def check_cache_encoder(path: Path, motion_encoder: str | None) -> None:
    """Stop if a cache part holds another motion encoder's features (parts that record none: the shipped one)."""
    from safetensors import safe_open

    from fantasy_portrait.synthetic.tiny_model import motion_encoder_digest

    with safe_open(str(path), framework="pt") as f:
        found = (f.metadata() or {}).get("motion_encoder_sha256") or motion_encoder_digest()
    if found != motion_encoder_digest(motion_encoder):
        raise SystemExit(f"{path}: holds another motion encoder's features; use a new --cache")


def render_cases(cache: Path, samples: int, seed: int, motion_encoder: str | None = None) -> None:
    """Render the training cases once, with everything but their latents: ``cache/part_XXX.safetensors``
    (CACHE_PART cases each: ground-truth frames and boxes, and the latent-free training tensors).
    The latent (fitted or trained on these frames) then only encodes them (:func:`cached_cases`).
    Interrupting and re-running continues with the first missing part. motion_encoder: the synthetic
    motion encoder file or name (default: the shipped one); its sha256 is recorded in every part."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from fantasy_portrait.synthetic.cases import make_case, training_tensors
    from fantasy_portrait.synthetic.latent import PatchImageEncoder
    from fantasy_portrait.synthetic.tiny_model import (
        SyntheticMotionEncoder,
        empty_prompt,
        motion_encoder_digest,
    )

    cache.mkdir(parents=True, exist_ok=True)
    encoder = SyntheticMotionEncoder(path=motion_encoder)
    image_encoder, text = PatchImageEncoder(), empty_prompt()
    meta = {"motion_encoder_sha256": motion_encoder_digest(motion_encoder)}
    for part in range((samples + CACHE_PART - 1) // CACHE_PART):
        path = cache / f"part_{part:03d}.safetensors"
        if path.is_file():
            check_cache_encoder(path, motion_encoder)
            continue
        # One jitter stream per part, so that a resumed run draws exactly what an uninterrupted one does.
        rng = np.random.default_rng([seed, 991, part])
        tensors = {}
        first = part * CACHE_PART
        for i in tqdm(range(first, min(first + CACHE_PART, samples)), desc=f"part {part}", mininterval=30):
            case = make_case(CASE_SEED_BASE + i)
            with torch.no_grad():
                t = training_tensors(case, _NoLatent(), image_encoder, encoder, text, rng)
            for k in ("clip", "motion", "labels", "regions"):  # text: the constant empty prompt
                tensors[f"{i}.{k}"] = t[k].clone().contiguous()
            tensors[f"{i}.frames"] = torch.from_numpy(np.ascontiguousarray(case.truth.frames))
            tensors[f"{i}.boxes"] = torch.from_numpy(np.ascontiguousarray(case.truth.boxes, np.float32))
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        logging.info("cached cases %d..%d in %s", first, first + CACHE_PART - 1, path)


def cached_cases(cache: Path, samples: int):
    """Yield (index, tensors) of the first ``samples`` cached cases (render_cases' files, in order)."""
    from safetensors.torch import load_file

    for part in range((samples + CACHE_PART - 1) // CACHE_PART):
        path = cache / f"part_{part:03d}.safetensors"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (run with --cache-only first, or without --cache)")
        data = load_file(str(path))
        for i in range(part * CACHE_PART, min((part + 1) * CACHE_PART, samples)):
            yield i, {k.split(".", 1)[1]: v for k, v in data.items() if k.split(".", 1)[0] == str(i)}


def fit_conv(
    out: Path,
    cache: Path,
    cases: int,
    steps: int,
    seed: int,
    base: Path | None = None,
    noise: float = 0.1,
    anchor: float = 0.002,
    decoder_of: Path | None = None,
    lr: float = 1e-3,
) -> Path:
    """Train the convolutional latent (``synthetic.latent.ConvLatent``) on the ground-truth clips of the
    first ``cases`` cached cases, starting from the linear latent in ``base`` (default: the shipped
    model's). decoder_of: instead, continue training only the decoder of this convolutional latent (its
    latent space, and so a model trained on it, stays valid). Writes ``<out>/latent.safetensors`` (+ a
    JSON record); resumes from its checkpoint."""
    from safetensors.torch import load_file, save_file

    from fantasy_portrait.synthetic.latent import ConvLatent, LinearLatent, fit_conv_latent
    from fantasy_portrait.synthetic.tiny_model import load_tiny_model

    path = out / "latent.safetensors"
    if path.is_file():
        logging.info("reusing %s", path)
        return path
    linear = LinearLatent.from_state(load_file(str(base))) if base else load_tiny_model()[2]
    latent = ConvLatent.from_state(load_file(str(decoder_of))) if decoder_of else ConvLatent(linear)
    clips, boxes = [], []
    for _, t in cached_cases(cache, cases):
        clips.append(t["frames"].numpy())
        boxes.append(t["boxes"].numpy())
    ckpt_path = out / "latent_conv_checkpoint.pt"
    state = torch.load(ckpt_path, weights_only=True) if ckpt_path.is_file() else None

    def checkpoint(step, st):
        torch.save(st, out / ".latent_conv_checkpoint.pt.tmp")
        (out / ".latent_conv_checkpoint.pt.tmp").replace(ckpt_path)

    t0 = time.perf_counter()
    before = (latent if decoder_of else linear).explained_variance(clips[:16])
    history = fit_conv_latent(
        latent,
        clips,
        boxes,
        steps=steps,
        seed=seed,
        noise=noise,
        anchor=anchor,
        lr=lr,
        state=state,
        checkpoint=checkpoint,
        train_encoder=decoder_of is None,
    )
    after = latent.explained_variance(clips[:16])
    logging.info("conv latent: variance kept %.3f -> %.3f (%.0f s)", before, after, time.perf_counter() - t0)
    save_file({k: v.contiguous() for k, v in latent.state_dict().items()}, str(path))
    (out / "latent.json").write_text(
        json.dumps(
            {
                "kind": "conv",
                "cases": cases,
                "steps": steps,
                "seed": seed,
                "noise": noise,
                "anchor": anchor,
                "lr": lr,
                "decoder_of": str(decoder_of) if decoder_of else None,
                "explained_before": before,
                "explained_after": after,
                "history": history,
            },
            indent=1,
        )
    )
    return path


def build_set_from_cache(out: Path, cache: Path, samples: int, motion_encoder: str | None = None) -> None:
    """The precomputed set of the first ``samples`` cached cases, encoded with ``<out>/latent.safetensors``
    (either kind of latent) exactly as :func:`fantasy_portrait.synthetic.cases.training_tensors` does.
    motion_encoder: the encoder the cache's motion features must come from (default: the shipped one)."""
    from safetensors.torch import load_file

    from fantasy_portrait.pipeline import conditioning
    from fantasy_portrait.synthetic.cases import to_video_tensor
    from fantasy_portrait.synthetic.latent import latent_from_state
    from fantasy_portrait.synthetic.tiny_model import empty_prompt
    from fantasy_portrait.training.dataset import INDEX_NAME, ShardWriter

    set_dir = out / "set"
    if (set_dir / INDEX_NAME).is_file():
        logging.info("reusing the training set in %s", set_dir)
        return
    for part in range((samples + CACHE_PART - 1) // CACHE_PART):
        if (cache / f"part_{part:03d}.safetensors").is_file():
            check_cache_encoder(cache / f"part_{part:03d}.safetensors", motion_encoder)
    t0 = time.perf_counter()
    latent = latent_from_state(load_file(str(out / "latent.safetensors")))
    text = empty_prompt()
    writer = ShardWriter(set_dir, shard_size=128, options={"source": "synthetic cases", "samples": samples})
    writer.write_empty_prompt(text[0])
    for i, t in cached_cases(cache, samples):
        frames = t.pop("frames").numpy()
        t.pop("boxes")
        video = to_video_tensor(frames)
        with torch.no_grad():
            t["latents"] = latent.encode(video)[0].contiguous()
            ref = conditioning.image_tensor(frames[0])
            t["image_latents"] = conditioning.image_latents(latent, ref, len(frames))[0].contiguous()
        t["text"] = text.reshape(-1, text.shape[-1])[:1].contiguous()
        writer.add(f"case{CASE_SEED_BASE + i}", t, source=f"synthetic.cases.make_case({CASE_SEED_BASE + i})")
    writer.close()
    logging.info("training set: %d samples in %.0f s", samples, time.perf_counter() - t0)


def build_set(
    out: Path, samples: int, seed: int, fit_cases: int = 128, motion_encoder: str | None = None
) -> None:
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from fantasy_portrait.synthetic.cases import make_case, training_tensors
    from fantasy_portrait.synthetic.latent import LinearLatent, PatchImageEncoder
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder, empty_prompt
    from fantasy_portrait.training.dataset import INDEX_NAME, ShardWriter

    set_dir = out / "set"
    latent_path = out / "latent.safetensors"
    if (set_dir / INDEX_NAME).is_file() and latent_path.is_file():
        logging.info("reusing the training set in %s", set_dir)
        return
    t0 = time.perf_counter()
    fit = [make_case(CASE_SEED_BASE + i) for i in range(min(fit_cases, samples))]
    if latent_path.is_file():  # a latent given beforehand (a larger set for the same model)
        logging.info("encoding with the existing latent %s", latent_path)
        latent = LinearLatent.from_state(load_file(str(latent_path)))
    else:
        latent = LinearLatent.fit([c.truth.frames for c in fit], seed=seed)
        save_file({k: v.contiguous() for k, v in latent.state_dict().items()}, str(latent_path))
        latent.load_state_dict(load_file(str(latent_path)))
    logging.info(
        "latent keeps %.3f of the pixel variance",
        latent.explained_variance([c.truth.frames for c in fit[:16]]),
    )
    image_encoder, encoder = PatchImageEncoder(), SyntheticMotionEncoder(path=motion_encoder)
    text = empty_prompt()
    writer = ShardWriter(set_dir, shard_size=128, options={"source": "synthetic cases", "samples": samples})
    writer.write_empty_prompt(text[0])
    rng = np.random.default_rng([seed, 991])
    for i in tqdm(range(samples), desc="cases", mininterval=10):
        case = fit[i] if i < len(fit) else make_case(CASE_SEED_BASE + i)
        with torch.no_grad():
            tensors = training_tensors(case, latent, image_encoder, encoder, text, rng)
        writer.add(
            f"case{CASE_SEED_BASE + i}", tensors, source=f"synthetic.cases.make_case({CASE_SEED_BASE + i})"
        )
    writer.close()
    logging.info("training set: %d samples in %.0f s", samples, time.perf_counter() - t0)


def fit_refiner(out: Path, cases: int, steps: int, seed: int) -> Path:
    """Train the latent's nonlinear decoder correction on the ground-truth clips of the training cases."""
    from safetensors.torch import load_file, save_file

    from fantasy_portrait.synthetic.cases import make_case
    from fantasy_portrait.synthetic.latent import LinearLatent

    path = out / "latent_refined.safetensors"
    if path.is_file():
        logging.info("reusing %s", path)
        return path
    latent = LinearLatent.from_state(load_file(str(out / "latent.safetensors")))
    t0 = time.perf_counter()
    fit = [make_case(CASE_SEED_BASE + i) for i in range(cases)]
    clips = [c.truth.frames for c in fit]
    before = latent.explained_variance(clips[:16])
    history = latent.fit_refiner(clips, [c.truth.boxes for c in fit], steps=steps, seed=seed)
    after = latent.explained_variance(clips[:16])
    logging.info("refiner: variance kept %.3f -> %.3f (%.0f s)", before, after, time.perf_counter() - t0)
    save_file({k: v.contiguous() for k, v in latent.state_dict().items()}, str(path))
    (out / "latent_refined.json").write_text(
        json.dumps(
            {
                "cases": cases,
                "steps": steps,
                "seed": seed,
                "explained_before": before,
                "explained_after": after,
                "history": history,
            },
            indent=1,
        )
    )
    return path


def train(
    config_path: Path,
    out: Path,
    set_dir: Path,
    overrides: list[str],
    variant: str = "full",
    init_from: Path | None = None,
):
    import fantasy_portrait.training.trainer as trainer_mod
    from fantasy_portrait.training.config import load_config

    cfg = load_config(
        config_path,
        [f"data.root={set_dir.resolve()}", f"train.output_dir={(out / 'train').resolve()}", *overrides],
    )
    transformer, encoder = variant_models(variant, cfg.model.init_seed)
    if init_from is not None:  # continue a finished run on a new set (a fresh optimizer and EMA)
        load_trained(init_from, transformer, encoder)
        logging.info("initialised from %s", init_from)
    result = trainer_mod.Trainer(cfg, transformer=transformer, encoder=encoder).train()
    return cfg, result


def install(
    out: Path,
    cfg,
    command: str,
    variant: str = "full",
    target: Path | None = None,
    motion_encoder: str | None = None,
) -> Path:
    from safetensors.torch import load_file

    from fantasy_portrait.synthetic.latent import latent_from_state
    from fantasy_portrait.synthetic.motion_encoder import weights_reference
    from fantasy_portrait.synthetic.tiny_model import WEIGHTS_PATH, motion_encoder_digest, save_tiny_model
    from fantasy_portrait.training import checkpoint as ckpt
    from fantasy_portrait.training.trainer import EMA_FILE, TRAINABLE_FILE, read_loss_log

    last = ckpt.latest_checkpoint(out / "train" / "checkpoints")
    if last is None:
        raise SystemExit(f"no checkpoint in {out / 'train'}")
    name = EMA_FILE if (last / EMA_FILE).is_file() else TRAINABLE_FILE
    transformer, encoder = variant_models(variant, cfg.model.init_seed)
    load_trained(last / name, transformer, encoder)
    latent_dir = Path(cfg.data.root).parent  # the latent was fitted beside the set it encoded
    refined = latent_dir / "latent_refined.safetensors"
    if refined.is_file():
        latent = latent_from_state(load_file(str(refined)))
    else:
        logging.info("no trained latent refiner in %s: shipping the plain linear decoder", latent_dir)
        latent = latent_from_state(load_file(str(latent_dir / "latent.safetensors")))
    losses = read_loss_log(out / "train")
    steps = sorted(losses)
    tail = [losses[s] for s in steps[-50:]]
    head = [losses[s] for s in steps[:50]]
    extra = {
        "command": command,
        "config": cfg.to_dict(),
        "checkpoint": last.name,
        "weights": name,
        "steps": steps[-1] if steps else 0,
        "loss_first_50": float(np.mean(head)) if head else None,
        "loss_last_50": float(np.mean(tail)) if tail else None,
        "trained": "whole DiT + expression encoder from scratch (no pretrained base)",
        "variant": variant,
        "masked_motion": bool(cfg.model.masked_motion),
        # The encoder whose features the model was trained on: build_pipeline loads this one.
        "motion_encoder": weights_reference(motion_encoder),
        "motion_encoder_sha256": motion_encoder_digest(motion_encoder),
    }
    path = save_tiny_model(target or WEIGHTS_PATH, transformer, encoder, latent, extra=extra)
    if target is not None:
        logging.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
        return path
    from fantasy_portrait.pipeline.encoders import save_empty_prompt
    from fantasy_portrait.synthetic.tiny_model import EMPTY_PROMPT_PATH, empty_prompt

    save_empty_prompt(EMPTY_PROMPT_PATH, empty_prompt(int(transformer.config["text_dim"])))
    logging.info("installed %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def record(steps: int, guidance: float, seed: int = 0) -> Path:
    """Run the demo with the installed weights and write its metrics next to them (the tests compare)."""
    import tempfile

    from fantasy_portrait.synthetic.demo import run_demo
    from fantasy_portrait.synthetic.tiny_model import RECORD_PATH, load_tiny_model, motion_encoder_digest

    _, _, _, extra = load_tiny_model()
    motion_encoder = extra.get("motion_encoder")  # None: trained before encoders were recorded (the shipped)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(tmp, seed=seed, num_steps=steps, motion_guidance=guidance, progress=False)
        summary = json.loads(result.files["metrics"].read_text())
    summary.pop("files", None)
    summary["training"] = extra
    # The model was trained on this encoder's features: a changed encoder needs a retrained model.
    summary["motion_encoder_sha256"] = motion_encoder_digest(motion_encoder)
    RECORD_PATH.write_text(json.dumps(summary, indent=1) + "\n")
    logging.info("recorded demo metrics in %s\n%s", RECORD_PATH, result.table())
    return RECORD_PATH


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "synthetic_portrait")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "synthetic_portrait.yaml")
    p.add_argument("--samples", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--install", action="store_true", help="write the trained weights into the package assets")
    p.add_argument("--install-to", type=Path, help="write the trained weights to this file instead")
    p.add_argument("--variant", choices=VARIANTS, default="full", help="ablation variant (see above)")
    p.add_argument(
        "--set", type=Path, help="precomputed set to train on (default: <out>/set, built if missing)"
    )
    p.add_argument(
        "--init-from", type=Path, help="start from these weights (a checkpoint's ema/trainable file)"
    )
    p.add_argument("--install-only", action="store_true", help="only install the latest checkpoint")
    p.add_argument("--refiner-only", action="store_true", help="only train the latent's decoder refiner")
    p.add_argument(
        "--cache",
        type=Path,
        help="rendered-case cache (render_cases): build the set from it; with --cache-only, fill it",
    )
    p.add_argument("--cache-only", action="store_true", help="only render --samples cases into --cache")
    p.add_argument(
        "--conv-latent-only",
        action="store_true",
        help="only train the convolutional latent on --conv-cases cached cases (<out>/latent.safetensors)",
    )
    p.add_argument("--conv-cases", type=int, default=300)
    p.add_argument("--conv-steps", type=int, default=1500)
    p.add_argument("--conv-noise", type=float, default=0.1, help="latent noise level in its training")
    p.add_argument("--conv-anchor", type=float, default=0.002, help="weight of the pull to the linear code")
    p.add_argument("--conv-lr", type=float, default=1e-3)
    p.add_argument(
        "--conv-decoder-of", type=Path, help="train only the decoder of this convolutional latent further"
    )
    p.add_argument("--refiner-cases", type=int, default=160)
    p.add_argument("--refiner-steps", type=int, default=1500)
    p.add_argument(
        "--record", action="store_true", help="run the demo with the installed weights, record metrics"
    )
    p.add_argument("--record-steps", type=int, default=20)
    p.add_argument("--record-guidance", type=float, default=4.0)
    p.add_argument(
        "--motion-encoder",
        help="synthetic motion encoder whose features the model is trained on: a file or a name of "
        "motion_encoder.NAMED_WEIGHTS ('default', 'disentangled'); recorded in the weights, which "
        "build_pipeline then runs with it (default: the shipped encoder)",
    )
    p.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "scripts/train_synthetic_portrait.py", *(argv or sys.argv[1:])])
    from fantasy_portrait.training.config import load_config

    if args.cache_only:
        if args.cache is None:
            raise SystemExit("--cache-only needs --cache")
        render_cases(args.cache, args.samples, args.seed, args.motion_encoder)
        return 0
    if args.conv_latent_only:
        if args.cache is None:
            raise SystemExit("--conv-latent-only needs --cache")
        fit_conv(
            args.out,
            args.cache,
            args.conv_cases,
            args.conv_steps,
            args.seed,
            noise=args.conv_noise,
            anchor=args.conv_anchor,
            decoder_of=args.conv_decoder_of,
            lr=args.conv_lr,
        )
        return 0
    if args.refiner_only:
        fit_refiner(args.out, args.refiner_cases, args.refiner_steps, args.seed)
        return 0
    overrides = [*variant_overrides(args.variant), *args.overrides]
    set_dir = args.set or args.out / "set"
    if args.set is None and not args.install_only:
        if args.cache is not None:
            build_set_from_cache(args.out, args.cache, args.samples, args.motion_encoder)
        else:
            build_set(args.out, args.samples, args.seed, motion_encoder=args.motion_encoder)
    if not args.install_only:
        t0 = time.perf_counter()
        cfg, result = train(args.config, args.out, set_dir, overrides, args.variant, args.init_from)
        logging.info(
            "trained %d steps in %.0f s; last loss %.4f",
            result.final_step,
            time.perf_counter() - t0,
            result.losses.get(result.final_step, float("nan")),
        )
    cfg = load_config(args.config, [f"data.root={set_dir.resolve()}", *overrides])
    (args.out / "command.json").write_text(json.dumps({"command": command}, indent=1))
    if args.install or args.install_only or args.install_to:
        install(args.out, cfg, command, args.variant, args.install_to, args.motion_encoder)
    if args.record:
        record(args.record_steps, args.record_guidance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
