"""Runner, scoring, reports and CLI end to end on real media (few frames, small sizes)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fantasy_portrait import cli
from fantasy_portrait.bench import methods, report, runner, scoring
from fantasy_portrait.bench.manifest import manifest_from_dict, save_manifest
from fantasy_portrait.errors import FantasyPortraitError, InputError
from fantasy_portrait.io import read_video

ASSETS = (Path(__file__).parents[2] / ".." / "shared" / "assets").resolve()
CASES = [
    {"id": "self-d0", "mode": "self", "video": "lp_d0.mp4"},
    {"id": "cross-man", "mode": "cross", "portrait": "fp_man.jpeg", "drivers": ["lp_d12.mp4"]},
    {
        "id": "cross-two",
        "mode": "cross",
        "portrait": "fp_two_person.png",
        "drivers": ["lp_d0.mp4", "lp_d12.mp4"],
        "max_side": 480,
    },
]


def _manifest():
    return manifest_from_dict({"name": "mini", "frames": 6, "max_side": 160, "cases": CASES}, ASSETS)


class Counting(methods.RepeatPortrait):
    def __init__(self, name="counting", version=1):
        super().__init__(name)
        self.calls, self.version = [], version

    def signature(self):
        return f"counting/{self.version}"

    def generate(self, case, output):
        self.calls.append(case.case.id)
        super().generate(case, output)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run with repeat-portrait and copy-driver outputs, both scored."""
    path = tmp_path_factory.mktemp("bench_run")
    manifest = _manifest()
    for spec in ("repeat-portrait", "copy-driver"):
        runner.run_method(manifest, methods.make_method(spec), path)
        scoring.score_method(manifest, path, spec)
    return path


def test_prepared_inputs_follow_the_manifest(run_dir):
    manifest = _manifest()
    prepared = {c.id: runner.prepare_case(manifest, c, run_dir) for c in manifest.cases}
    gt = read_video(prepared["self-d0"].ground_truth)
    assert len(gt) == 6 and max(gt.frames.shape[1:3]) <= 160
    assert [p.name for p in prepared["cross-two"].drivers] == ["driver_0.mp4", "driver_1.mp4"]
    assert max(prepared["cross-two"].width, prepared["cross-two"].height) <= 480
    assert all(len(read_video(d)) == 6 for d in prepared["cross-two"].drivers)


def test_outputs_are_cached_resumed_and_redone_when_the_method_changes(run_dir):
    manifest = _manifest()
    method = Counting()
    runner.run_method(manifest, method, run_dir)
    assert method.calls == ["self-d0", "cross-man", "cross-two"]
    method.calls.clear()
    runner.run_method(manifest, method, run_dir)
    assert method.calls == []  # everything cached
    runner.output_path(run_dir, "counting", "cross-man").unlink()
    runner.run_method(manifest, method, run_dir)
    assert method.calls == ["cross-man"]  # resume: only the missing one
    changed = Counting(version=2)
    runner.run_method(manifest, changed, run_dir)
    assert changed.calls == ["self-d0", "cross-man", "cross-two"]


def test_scores_of_the_trivial_methods(run_dir):
    copy = json.loads((run_dir / "scores" / "copy-driver" / "summary.json").read_text())
    still = json.loads((run_dir / "scores" / "repeat-portrait" / "summary.json").read_text())
    # The driving video itself is the ground truth of a self-reenactment case: perfect scores.
    single_self = copy["subsets"]["single"]["self"]
    assert single_self["ssim"] == pytest.approx(1.0, abs=1e-9)
    for name in ("lmd", "mae", "apd", "aed"):
        assert single_self[name] == pytest.approx(0.0, abs=1e-9)
    for name in ("aed", "apd", "mae"):
        assert copy["subsets"]["single"]["cross"][name] == pytest.approx(0.0, abs=1e-9)
    # A still portrait is worse on every metric.
    assert still["subsets"]["single"]["self"]["ssim"] < 0.99
    for name in ("lmd", "mae", "apd", "aed"):
        assert still["subsets"]["single"]["self"][name] > 0.01
    # Copying the first driver into a two-face case leaves the second face missing.
    assert copy["subsets"]["multi"]["cross"]["face_rate"] == pytest.approx(0.5)
    assert still["subsets"]["multi"]["cross"]["face_rate"] == pytest.approx(1.0)
    per_case = scoring.load_case_scores(run_dir, "repeat-portrait")
    assert len(per_case["cross-two"]["faces"]) == 2
    assert len(per_case["self-d0"]["frames_ssim"]) == 6
    assert copy["extractors"]["fid"] is None and "FID not computed" in " ".join(
        copy["subsets"]["single"]["self"]["notes"]
    )


def test_scores_are_cached_until_the_output_changes(run_dir):
    manifest = _manifest()
    path = run_dir / "scores" / "repeat-portrait" / "self-d0.json"
    before = path.stat().st_mtime_ns

    class NoBackend:
        def detect(self, image):
            raise AssertionError("cached scores must not run face detection again")

    scoring.score_method(manifest, run_dir, "repeat-portrait", backend=NoBackend())
    assert path.stat().st_mtime_ns == before


def test_report_in_all_formats(run_dir, tmp_path):
    paths = report.write_report(run_dir, tmp_path / "rep")
    md = paths["markdown"].read_text()
    assert "## ExprBench-Single" in md and "## ExprBench-Multi" in md
    assert "| copy-driver | – | – | 1.000 | 0.00 |" in md
    assert "mediapipe-facemesh-478" in md
    with open(paths["csv"], newline="") as f:
        records = list(csv.DictReader(f))
    ssim = [r for r in records if r["method"] == "copy-driver" and r["metric"] == "ssim"]
    assert len(ssim) == 1 and float(ssim[0]["value"]) == pytest.approx(1.0)
    data = json.loads(paths["json"].read_text())
    assert {m["method"] for m in data["methods"]} >= {"copy-driver", "repeat-portrait"}
    pngs = [p for k, p in paths.items() if p.suffix == ".png"]
    assert len(pngs) == 1 + 3  # bars + one per-frame figure per case
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_template_expands_placeholders(run_dir):
    manifest = _manifest()
    prepared = runner.prepare_case(manifest, manifest.case("cross-two"), run_dir)
    m = methods.make_method("tool=command:mytool --in {source} --drive {drivers} --fps {fps} -o {output}")
    argv = m.argv(prepared, Path("/x/out.mp4"))
    assert m.name == "tool"
    assert argv[:3] == ["mytool", "--in", str(prepared.source)]
    assert argv[4:6] == [str(p) for p in prepared.drivers] and argv[-1] == "/x/out.mp4"


def test_command_failures_are_reported(run_dir):
    manifest = _manifest()
    failing = methods.make_method(
        f"bad=command:{sys.executable} -c 'import sys; sys.exit(\"boom\")' {{output}}"
    )
    with pytest.raises(FantasyPortraitError, match=r"failed on case self-d0 \(exit 1\): boom"):
        runner.run_method(manifest, failing, run_dir)
    silent = methods.make_method(f"silent=command:{sys.executable} -c pass {{output}}")
    with pytest.raises(FantasyPortraitError, match="wrote no"):
        runner.run_method(manifest, silent, run_dir)
    with pytest.raises(InputError, match="must contain"):
        methods.make_method("command:mytool {source}")
    with pytest.raises(InputError, match="unknown method"):
        methods.make_method("liveportrait")


def test_ours_method_calls_the_pipeline_with_the_prepared_case(run_dir, monkeypatch):
    import types

    seen = {}

    class FakePipeline:
        @classmethod
        def from_pretrained(cls, weights, **kwargs):
            seen["weights"], seen["load"] = weights, kwargs
            return cls()

        def __call__(self, image, driving, **kwargs):
            seen["image"], seen["driving"], seen["call"] = image, driving, kwargs
            methods.RepeatPortrait("x").generate(prepared, Path(kwargs["output"]))

    # Stand in for the (heavy) pipeline module; OursMethod imports it only when it runs.
    fake = types.ModuleType("fantasy_portrait.pipeline.pipeline")
    fake.FantasyPortraitPipeline = FakePipeline
    monkeypatch.setitem(sys.modules, "fantasy_portrait.pipeline.pipeline", fake)
    options = run_dir / "ours.json"
    options.write_text(json.dumps({"weights": "/w", "num_steps": 3, "seed": 7, "device": "cpu"}))
    manifest = _manifest()
    prepared = runner.prepare_case(manifest, manifest.case("cross-two"), run_dir)
    method = methods.make_method(f"ours:{options}")
    out = run_dir / "ours_out.mp4"
    method.generate(prepared, out)
    assert out.is_file()
    assert seen["weights"] == "/w" and seen["load"]["device"] == "cpu"
    assert seen["image"] == prepared.source and seen["driving"] == [str(p) for p in prepared.drivers]
    assert seen["call"]["num_steps"] == 3 and seen["call"]["seed"] == 7
    assert seen["call"]["max_frames"] == 6 and seen["call"]["fps"] == prepared.fps


def test_cli_run_score_report(tmp_path):
    manifest = manifest_from_dict({"name": "cli", "frames": 4, "max_side": 128, "cases": CASES[:2]}, ASSETS)
    path = save_manifest(manifest, tmp_path / "m.json")
    out = tmp_path / "run"
    copy = methods.copy_video_command()
    code = cli.main(
        [
            "bench",
            "run",
            str(path),
            "-o",
            str(out),
            "-m",
            "repeat-portrait",
            "-m",
            f"copy=command:{copy}",
            "--score",
        ]
    )
    assert code == 0
    md = (out / "report" / "report.md").read_text()
    assert "| copy | – | – | 1.000 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |" in md
    assert "| repeat-portrait |" in md
    assert cli.main(["bench", "report", str(out)]) == 0
    assert cli.main(["bench", "score", str(path), "-o", str(out), "-m", "copy"]) == 0
    assert (
        cli.main(["bench", "run", str(tmp_path / "none.json"), "-o", str(out), "-m", "repeat-portrait"]) == 2
    )
    assert (
        cli.main(
            [
                "bench",
                "score",
                str(path),
                "-o",
                str(out),
                "-m",
                "copy",
                "--fid-weights",
                str(tmp_path / "no.pth"),
            ]
        )
        == 2
    )
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    fid = [r for r in rows if r["metric"] == "fid"]
    assert fid and all(r["value"] is None for r in fid)  # no extractor weights: not computed, not faked
    ssim = {r["method"]: r["value"] for r in rows if r["metric"] == "ssim"}
    assert ssim["copy"] == pytest.approx(1.0) and 0 < ssim["repeat-portrait"] < 1


class _ColourStats:
    """Stand-in extractor with the extractors' interface: per-frame colour statistics as features."""

    def __init__(self, path: Path, kind: str):
        self.name, self.path, self.kind, self.calls = f"colour-stats-{kind}", path, kind, 0

    def __call__(self, data):
        self.calls += 1
        if self.kind == "fid":
            x = np.asarray(data, np.float64)
            return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
        return np.stack([np.asarray(c, np.float64).mean(axis=(0, 1, 2)) for c in data])


def test_fid_and_fvd_through_the_scorer(run_dir):
    manifest = _manifest()
    weights = run_dir / "fake_weights.bin"
    weights.write_bytes(b"w")
    pairs = {}
    for name in ("copy-driver", "repeat-portrait"):
        prepared = runner.prepare_case(manifest, manifest.case("self-d0"), run_dir)
        out = runner.output_path(run_dir, name, "self-d0")
        pairs[name] = [(out, prepared.ground_truth, prepared.fps, prepared.num_frames)] * 2
    fid, fvd = _ColourStats(weights, "fid"), _ColourStats(weights, "fvd")
    same = scoring.distribution_metrics(pairs["copy-driver"], fid, fvd, run_dir / "cache")
    still = scoring.distribution_metrics(pairs["repeat-portrait"], fid, fvd, run_dir / "cache")
    assert same["fid"] == pytest.approx(0.0, abs=1e-9) and same["fid_samples"] == 12
    assert still["fid"] > 1e-3
    # 6 frames make no 16-frame clip: FVD says so instead of inventing a number.
    assert same["fvd"] is None and any("FVD not computed" in n for n in same["notes"])
    calls = fid.calls
    scoring.distribution_metrics(pairs["repeat-portrait"], fid, fvd, run_dir / "cache")
    assert fid.calls == calls  # features cached per file content


def test_fvd_on_clips_through_the_scorer(tmp_path):
    manifest = manifest_from_dict({"name": "clips", "frames": 32, "max_side": 96, "cases": CASES[:1]}, ASSETS)
    prepared = runner.prepare_case(manifest, manifest.cases[0], tmp_path)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    result = {}
    for spec in ("copy-driver", "repeat-portrait"):
        method = methods.make_method(spec)
        runner.run_method(manifest, method, tmp_path)
        pair = (runner.output_path(tmp_path, spec, prepared.case.id), prepared.ground_truth, prepared.fps, 32)
        result[spec] = scoring.distribution_metrics(
            [pair] * 3, None, _ColourStats(weights, "fvd"), tmp_path / "cache"
        )
    assert result["copy-driver"]["fvd_samples"] == 6  # 2 clips of 16 frames per video, 3 pairs
    assert result["copy-driver"]["fvd"] == pytest.approx(0.0, abs=1e-9)
    assert result["repeat-portrait"]["fvd"] > 1e-3
    assert result["copy-driver"]["fid"] is None and "FID not computed" in result["copy-driver"]["notes"][0]
