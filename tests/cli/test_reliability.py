"""Issue 10 (and issue 16's split overlap): nothing lost, nothing read that should not be.

Each case of the issue is a test here, on tiny data the tests make: the embedded synth
dataset at size ``tiny`` (24 / 8 / 8 clips of 3 s), wav / mp3 files written with soundfile,
the papermill fixture notebooks of test_batch, and a fake retriever / tagger where a real
one would need downloaded weights. Sections follow the issue:
1 earlier results, 2 captions, 3 one door for audio, 4 parameters, 5 faults, 16 splits.
The end-to-end ``clotho`` profile run (section 6) is tests/cli/test_reliability_clotho.py.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import errno
import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from atrlib.__main__ import main as cli_main
from atrlib.audio.io import MIN_SECONDS, audio_info, load_audio, min_samples
from atrlib.data import load_dataset
from atrlib.errors import AudioError, DatasetError, DiskWriteError, PreflightError, ProfileError
from atrlib.files import dir_mode, file_mode, read_json, write_text_atomic
from atrlib.runs.profiles import load_profile, parse_overrides, resolve_parameters
from atrlib.train.config import TrainConfig
from atrlib.train.loop import fit, run_training
from stage_notebooks import stage_notebook as _stage_notebook

REPO = Path(atrlib.__file__).resolve().parents[1]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "notebooks"
SINGLE = FIXTURES / "params" / "single.yaml"
NOTEBOOKS = REPO / "notebooks"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def tiny_cfg(out, **kw) -> TrainConfig:
    base = dict(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=1, batch_size=16, lr=3e-3,
                device="cpu", progress=False, out_dir=str(out))
    base.update(kw)
    return TrainConfig(**base)


def tone(path, seconds=0.5, sr=16000, freq=440.0, subtype="PCM_16", fmt=None, scale=0.5):
    t = np.arange(int(seconds * sr)) / sr
    x = (scale * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(str(path), x, sr, subtype=subtype, format=fmt)
    return x


def folder_dataset(root: Path, rows, n=3, header="file_name,caption_1"):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tone(root / f"c{i}.wav", freq=300 + 100 * i)
    (root / "captions.csv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


class FakeRetriever:
    """Embeds a clip by its decoded samples (two numbers), text by its length: no weights."""

    name = "fake"

    def embed_audio(self, paths, progress=False):
        out = []
        for p in paths:
            x, _ = load_audio(p, sample_rate=16000)
            out.append([float(np.abs(x).mean()) + 1e-3, float(len(x)) / 16000])
        return np.asarray(out, np.float32)

    def embed_text(self, texts):
        return np.asarray([[len(t), 1.0] for t in texts], np.float32)

    def similarity(self, texts, paths, progress=False):
        from atrlib.retrieval.retrievers import l2_normalize

        return l2_normalize(self.embed_text(texts)) @ l2_normalize(self.embed_audio(paths)).T


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run (frozen mel-stats + MiniLM heads, 1 epoch) shared by the tests."""
    out = tmp_path_factory.mktemp("train") / "run"
    run_training(tiny_cfg(out))
    return out


# ============================================================================================
# 1. Earlier results are never destroyed
# ============================================================================================
def test_train_refuses_a_folder_holding_a_run_and_overwrite_moves_it_aside(trained, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("metrics.json", "history.json"):
        (out / name).write_text((trained / name).read_text())
    before = (out / "metrics.json").read_text()
    with pytest.raises(PreflightError, match=r"already holds a training run \(metrics.json, history.json\)"):
        run_training(tiny_cfg(out))
    assert (out / "metrics.json").read_text() == before and not (out / "best").exists()
    # the CLI says the same and exits 2 before reading any data
    assert cli_main(["train", f"out_dir={out}", "dataset=folder", "root=/nonexistent", "progress=false"]) == 2
    run_training(tiny_cfg(out, overwrite=True))
    prev = [p for p in tmp_path.iterdir() if p.name.startswith("run.prev-")]
    assert len(prev) == 1 and (prev[0] / "metrics.json").read_text() == before
    assert read_json(out / "metrics.json")["epochs_run"] == 1 and (out / "best" / "model.safetensors").exists()


def test_resume_with_a_changed_configuration_is_refused_naming_what_differs(trained):
    with pytest.raises(PreflightError, match=r"lr: 0\.003 -> 0\.01; seed: 0 -> 1"):
        fit(tiny_cfg(trained, resume=True, lr=1e-2, seed=1), None, {})
    with pytest.raises(PreflightError, match=r"size: 'tiny' -> 'smoke'"):
        fit(tiny_cfg(trained, resume=True, size="smoke"), None, {})
    # what does not change the learning (progress bars, workers) may differ
    from atrlib.train.preflight import prepare_out_dir

    assert prepare_out_dir(tiny_cfg(trained, resume=True, progress=True, num_workers=2)) is None


def test_evaluate_refuses_an_earlier_evaluation_and_overwrite_moves_it(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": 1}')
    (out / "sim_validation.npz").write_bytes(b"old")
    args = ["evaluate", "--model", str(trained), "--dataset", "synth", "--size", "tiny", "--split", "test",
            "--out", str(out)]
    assert cli_main(args) == 2
    assert "already holds an evaluation" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == '{"old": 1}'
    assert cli_main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "params.json", "sim_test.npz"]  # not mixed
    prev = [p for p in tmp_path.iterdir() if p.name.startswith("eval.prev-")]
    assert len(prev) == 1 and (prev[0] / "sim_validation.npz").read_bytes() == b"old"


def test_search_out_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "ranking.csv"
    out.write_text("earlier result")
    # a model name that does not exist: the refusal must come first, before anything is built
    assert cli_main(["search", "--model", "no-such-model", "--audio", str(tmp_path), "--query", "a dog",
                     "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "earlier result"


def test_run_overwrite_never_moves_a_folder_that_is_not_a_run(tmp_path, monkeypatch):
    from atrlib.runs.batch import run_profile
    from atrlib.errors import RunExistsError

    work = tmp_path / "my-work"
    work.mkdir()
    (work / "thesis.tex").write_text("precious")
    with pytest.raises(RunExistsError, match="not a run folder"):
        run_profile(SINGLE, out=work, overwrite=True, progress=False)
    assert (work / "thesis.tex").read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["my-work"]
    monkeypatch.chdir(work)  # `--out .` in the user's working directory
    assert cli_main(["run", "--profile", str(SINGLE), "--out", ".", "--overwrite", "--no-progress"]) == 2
    assert (work / "thesis.tex").exists() and not list(tmp_path.glob("my-work.prev-*"))


def test_run_resume_marks_a_killed_run_interrupted_keeps_ok_stages_and_resumes_training(tmp_path):
    from atrlib.runs.batch import run_profile
    from atrlib.runs.records import RunResult
    from atrlib.errors import RunExistsError

    nbs = tmp_path / "nbs"
    (nbs / "params").mkdir(parents=True)
    _stage_notebook(nbs / "first.ipynb", 'out_dir = ""\nrun_dir = ""',
                    "from atrlib.files import write_metrics\nimport time\n"
                    "write_metrics(out_dir, {'t': time.time()})")
    _stage_notebook(nbs / "train.ipynb", 'out_dir = ""\nresume = False\nepochs = 1',
                    "from atrlib.files import write_metrics\nwrite_metrics(out_dir, {'resume': resume, 'epochs': epochs})")
    (nbs / "params" / "p.yaml").write_text("stages:\n  - first.ipynb\n  - notebook: train.ipynb\n    needs: [first]\n")
    out = tmp_path / "run"
    first = run_profile(nbs / "params" / "p.yaml", out=out, overrides=["epochs=2"], progress=False)
    assert first.ok and read_json(out / "train" / "metrics.json") == {"resume": False, "epochs": 2}
    t_first = read_json(out / "first" / "metrics.json")["t"]
    # simulate a kill during the train stage: run.json says "running", its process is gone
    rec = read_json(out / "run.json")
    rec["stages"][1]["status"], rec["finished"], rec["pid"] = "running", None, 2 ** 22 + 12345
    (out / "run.json").write_text(json.dumps(rec))
    with pytest.raises(RunExistsError, match="--resume to continue it"):
        run_profile(nbs / "params" / "p.yaml", out=out, overrides=["epochs=2"], progress=False)
    assert RunResult.load(out).stage("train").status == "interrupted"  # marked when next seen
    with pytest.raises(RunExistsError, match="overrides differ"):
        run_profile(nbs / "params" / "p.yaml", out=out, overrides=["epochs=3"], resume=True, progress=False)
    resumed = run_profile(nbs / "params" / "p.yaml", out=out, resume=True, progress=False)  # recorded overrides
    assert resumed.ok and [s.status for s in resumed.stages] == ["ok", "ok"]
    assert read_json(out / "first" / "metrics.json")["t"] == t_first  # the finished stage was kept, not re-run
    assert read_json(out / "train" / "metrics.json") == {"resume": True, "epochs": 2}  # training told to resume


# ============================================================================================
# 2. Captions are read exactly or rejected
# ============================================================================================
def test_an_unquoted_comma_in_a_caption_is_an_error_naming_the_line(tmp_path):
    folder_dataset(tmp_path, ["c0.wav,a dog barks", "c1.wav,rain, then thunder", "c2.wav,a car"],
                   header="file_name,caption_1")
    with pytest.raises(DatasetError, match=r"captions.csv, line 3: 3 fields but the header has 2.*unquoted comma"):
        load_dataset("folder", root=tmp_path)
    folder_dataset(tmp_path, ["c0.wav,a dog barks,x", "c1.wav,\"rain, then thunder\",y", "c2.wav,a car,z"],
                   header="file_name,caption_1,caption_2")
    assert load_dataset("folder", root=tmp_path).items[1]["captions"] == ["rain, then thunder", "y"]


def test_an_unterminated_quote_that_swallows_rows_is_detected(tmp_path):
    folder_dataset(tmp_path, ["c0.wav,a dog barks", 'c1.wav,"rain on a roof', "c2.wav,a car passes"])
    with pytest.raises(DatasetError, match=r"line 3: .*(never closed|runs over)"):
        load_dataset("folder", root=tmp_path)
    # the quote closes at the end of the next row: two rows would become one item, c2.wav would vanish
    folder_dataset(tmp_path, ["c0.wav,a dog barks", 'c1.wav,"rain on a roof', 'c2.wav,a car passes"'])
    with pytest.raises(DatasetError, match="line 3: a quoted field runs over 2 lines"):
        load_dataset("folder", root=tmp_path)


# ============================================================================================
# 3. One door for audio
# ============================================================================================
def _csv(path: Path, names):
    path.write_text("file_name\n" + "\n".join(names) + "\n")
    return path


def test_search_file_lists_go_through_the_dataset_checks(tmp_path):
    from atrlib.retrieval.search import list_audio

    d = tmp_path / "clips"
    d.mkdir()
    tone(d / "a.wav")
    outside = tmp_path / "secret.wav"
    tone(outside)
    (d / "leak.wav").symlink_to(outside)
    (d / "zero.wav").symlink_to("/dev/zero")
    cases = {
        "../secret.wav": r"line 2: file_name '../secret.wav' points outside",
        "/etc/passwd": r"line 2: file_name '/etc/passwd' points outside",
        "leak.wav": r"line 2: 'leak.wav' resolves outside",
        "missing.wav": r"line 2: .*missing.wav: file not found",
    }
    for name, msg in cases.items():
        with pytest.raises(DatasetError, match=msg):
            list_audio(_csv(d / "list.csv", [name]))
    with pytest.raises(DatasetError, match=r"line 3: duplicate file_name 'a.wav' \(first on line 2\)"):
        list_audio(_csv(d / "list.csv", ["a.wav", "a.wav"]))
    # a device file or a pipe never reaches a decoder (it would be read, or waited on, forever)
    os.mkfifo(d / "pipe.wav")
    t0 = time.time()
    with pytest.raises(DatasetError, match=r"line 3: 'zero.wav' resolves outside"):
        list_audio(_csv(d / "list.csv", ["a.wav", "zero.wav"]))
    with pytest.raises(DatasetError, match=r"line 3: .*pipe.wav: is a device or pipe"):
        list_audio(_csv(d / "list.csv", ["a.wav", "pipe.wav"]))
    with pytest.raises(AudioError, match="is a device or pipe"):
        load_audio(d / "zero.wav")
    assert time.time() - t0 < 5
    skipped = []
    assert list_audio(_csv(d / "list.csv", ["a.wav", "zero.wav", "missing.wav"]), on_error="skip",
                      skipped=skipped) == [d / "a.wav"]
    assert len(skipped) == 2 and "line 3" in skipped[0] and "line 4" in skipped[1]
    skipped = []  # a folder: links out of it and device files are left out and listed
    assert list_audio(d, skipped=skipped) == [d / "a.wav"]
    assert sorted(Path(m.split(":")[0]).name for m in skipped) == ["leak.wav", "pipe.wav", "zero.wav"]


def test_one_unreadable_clip_does_not_abort_a_search(tmp_path):
    from atrlib.retrieval.search import rank

    d = tmp_path / "clips"
    d.mkdir()
    tone(d / "a.wav", seconds=0.5)
    tone(d / "b.wav", seconds=1.0)
    (d / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    paths = [d / "a.wav", d / "bad.wav", d / "b.wav"]
    with pytest.raises(AudioError, match="bad.wav: cannot decode"):
        rank(FakeRetriever(), ["a dog"], paths)
    skipped = []
    table = rank(FakeRetriever(), ["a dog"], paths, on_error="skip", skipped=skipped)
    assert sorted(table["file"]) == ["a.wav", "b.wav"] and len(skipped) == 1 and "bad.wav" in skipped[0]
    ref = FakeRetriever().similarity(["a dog"], [paths[0], paths[2]])[0]  # the same scores as without the bad clip
    assert np.allclose(sorted(table["score"], reverse=True), sorted(ref, reverse=True), atol=1e-6)


def test_evaluate_applies_the_fixes_its_errors_suggest(trained, tmp_path, capsys):
    root = tmp_path / "mine"
    root.mkdir()
    for i in range(4):
        tone(root / f"c{i}.wav", seconds=1.0, freq=300 + 150 * i)
    (root / "c4.wav").write_bytes(b"not audio at all" * 10)
    rows = [f"c{i}.wav,caf\xe9 sound {i},test" for i in range(5)]
    (root / "captions.csv").write_bytes(("file_name,caption_1,split\n" + "\n".join(rows) + "\n").encode("latin-1"))
    base = ["evaluate", "--model", str(trained), "--dataset", "folder", "--root", str(root), "--split", "test"]
    assert cli_main(base + ["--out", str(tmp_path / "e1")]) == 2
    assert "--encoding latin-1" in capsys.readouterr().err  # the fix, as a command-line flag
    assert cli_main(base + ["--encoding", "latin-1", "--out", str(tmp_path / "e2")]) == 2
    assert "--on-error skip" in capsys.readouterr().err
    assert cli_main(base + ["--encoding", "latin-1", "--on-error", "skip", "--out", str(tmp_path / "e3")]) == 0
    m = read_json(tmp_path / "e3" / "metrics.json")
    assert len(m["skipped_clips"]) == 1 and "c4.wav" in m["skipped_clips"][0] and m["t2a"]["n_queries"] == 4


def test_decoding_is_verified_not_trusted_from_the_header(tmp_path):
    full = tmp_path / "full.mp3"
    tone(full, seconds=4.0, sr=16000, fmt="MP3", subtype="MPEG_LAYER_III")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    dur, sr = audio_info(cut)
    decoded, _ = sf.read(str(cut), dtype="float32")  # an independent full decode
    assert dur == pytest.approx(len(decoded) / sr, abs=1e-6)
    assert dur < 0.75 * audio_info(full)[0]
    # NaN / inf / out-of-range float samples: reported at load time with the file and CSV line
    for name, x in {"nan.wav": np.array([0.1, np.nan, 0.2] * 400), "inf.wav": np.array([0.1, np.inf] * 600),
                    "loud.wav": np.array([0.1, 37.5, -0.2] * 400)}.items():
        root = tmp_path / name.split(".")[0]
        root.mkdir()
        sf.write(str(root / name), x.astype(np.float32), 16000, subtype="FLOAT")
        (root / "captions.csv").write_text(f"file_name,caption_1\n{name},a sound\n")
        msg = "outside \\[-1, 1\\]" if name == "loud.wav" else "NaN or infinite"
        with pytest.raises(DatasetError, match=rf"captions.csv, line 2: .*{name}: .*{msg}"):
            load_dataset("folder", root=root)


@pytest.mark.parametrize("tower_name", ["mel-stats", "small-cnn"])
@pytest.mark.parametrize("seconds", [1 / 16000, 0.01, 0.05])
def test_very_short_clips_give_finite_embeddings(tmp_path, tower_name, seconds):
    from atrlib.data.base import AudioCaptionDataset, ClipItem
    from atrlib.audio.embeddings import audio_tower_embeddings
    from atrlib.models.towers import AUDIO_TOWERS
    import atrlib.models  # noqa: F401  (not needed: the tower registry finds its modules on first look-up)

    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get(tower_name)().eval()
    n = max(1, int(round(seconds * 16000)))
    path = tmp_path / "short.wav"
    sf.write(str(path), np.full(n, 0.3, np.float32), 16000, subtype="FLOAT")
    item = ClipItem(clip_id="short.wav", audio_path=str(path), captions=["x"], duration=n / 16000,
                    sample_rate=16000, split="test")
    emb = audio_tower_embeddings(tower, {"name": tower_name}, AudioCaptionDataset("t", "test", None, [item]), 3.0,
                                 progress=False)
    assert emb.shape == (1, tower.embed_dim) and np.isfinite(emb).all()
    assert min_samples(tower) == getattr(tower, "min_samples", None) or int(MIN_SECONDS * tower.sample_rate)
    # the padding is what defines it: the embedding equals the tower on the zero-padded clip
    wave = torch.zeros(1, min_samples(tower))
    wave[0, :n] = 0.3
    with torch.no_grad():
        ref = tower(wave).float().numpy()
    assert np.allclose(emb, ref, atol=1e-5)


def test_long_clips_go_through_the_tagger_in_bounded_batches(tmp_path):
    from atrlib.retrieval.tagbridge import TagBridgeRetriever, split_segments

    class Tagger(torch.nn.Module):
        sample_rate = 16000
        seen = []

        def tag(self, wave):
            self.seen.append(wave.shape[0])
            return torch.stack([wave.mean(1), wave.abs().amax(1), wave.std(1)], 1)  # (segments, 3)

    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(str(path), (0.1 * rng.standard_normal(16000 * 12)).astype(np.float32), 16000, subtype="FLOAT")
    r = TagBridgeRetriever(segment_seconds=0.1, segment_batch_size=16, labels=("a", "b", "c"))
    r._tagger = Tagger()
    logits = r.compute_audio(path)
    assert logits.shape == (120, 3) and max(Tagger.seen) <= 16 and sum(Tagger.seen) == 120
    x, _ = load_audio(path, sample_rate=16000)
    ref = Tagger().tag(torch.from_numpy(np.stack(split_segments(x, 16000, 0.1)))).numpy()
    assert np.allclose(logits, ref, atol=1e-6)


# ============================================================================================
# 4. Parameters are checked before work starts
# ============================================================================================
@pytest.mark.parametrize("field,value,msg", [
    ("epochs", "abc", r"epochs must be an integer >= 1 .*, got 'abc'"),
    ("epochs", 0, r"epochs must be an integer >= 1 .*, got 0"),
    ("batch_size", 0, r"batch_size must be an integer >= 1, got 0"),
    ("lr", -1e-3, r"lr must be a number >= 0, got -0.001"),
    ("scheduler", "cosin", r"scheduler must be one of 'cosine', 'plateau', 'none'"),
])
def test_training_numbers_are_validated_naming_the_parameter(tmp_path, field, value, msg):
    with pytest.raises(PreflightError, match=msg):
        tiny_cfg(tmp_path / "r", **{field: value})
    assert not (tmp_path / "r").exists()


def test_train_cli_types_values_by_field_and_names_bad_ones(capsys):
    from atrlib.cli.train import build_config

    cfg = build_config(None, ["epochs=3", "lr=1e-3", "root=no", "dataset_kwargs={on_error: skip}"])
    assert (cfg.epochs, cfg.lr, cfg.root, cfg.dataset_kwargs) == (3, 0.001, "no", {"on_error": "skip"})
    assert cli_main(["train", "epochs=abc"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert cli_main(["train", "epochs=0"]) == 2
    assert "got 0" in capsys.readouterr().err


def test_run_parameters_are_typed_by_the_notebook_and_checked_before_anything_runs(tmp_path, capsys):
    prof = load_profile("smoke", NOTEBOOKS)
    res = resolve_parameters(prof, parse_overrides(["query=a dog #1 barking", "03_evaluate.split=no", "epochs=4",
                                                    "lr=1e-3"]), tmp_path)
    assert res["03_evaluate"]["query"] == "a dog #1 barking" and res["03_evaluate"]["split"] == "no"
    assert res["02_train"]["epochs"] == 4 and type(res["02_train"]["epochs"]) is int
    assert res["02_train"]["lr"] == 0.001
    with pytest.raises(ProfileError, match=r"epochs='abc': expected an integer"):
        resolve_parameters(prof, parse_overrides(["epochs=abc"]), tmp_path)
    with pytest.raises(ProfileError, match=r"stage 02_train: epochs must be an integer >= 1 .*, got 0"):
        resolve_parameters(prof, parse_overrides(["epochs=0"]), tmp_path)
    assert cli_main(["run", "--profile", "smoke", "-p", "batch_size=0", "--out", str(tmp_path / "o")]) == 2
    assert "batch_size must be an integer >= 1" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_search_queries_and_top_are_checked(tmp_path, capsys):
    from atrlib.retrieval.search import rank

    d = tmp_path / "clips"
    d.mkdir()
    tone(d / "a.wav", seconds=0.3)
    tone(d / "b.wav", seconds=0.6)
    empty = tmp_path / "q.txt"
    empty.write_text("\n  \n")
    for extra, msg in [(["--query", "a dog", "--top", "0"], "--top must be at least 1"),
                       (["--query", "a dog", "--top", "-1"], "--top must be at least 1"),
                       (["--query", "  "], "query 1 is empty"),
                       (["--queries", str(empty)], "no queries in this file"),
                       (["--query", "x", "--out", str(d / "a.wav" / "r.csv")], "is a file, not a folder")]:
        assert cli_main(["search", "--model", "no-such-model", "--audio", str(d)] + extra) == 2
        assert msg in capsys.readouterr().err
    table = rank(FakeRetriever(), ["a dog", " a dog ", "rain"], [d / "a.wav", d / "b.wav"], top=2)
    assert list(table["query"]) == ["a dog", "a dog", "rain", "rain"]  # duplicates ranked once
    with pytest.raises(ValueError, match="top must be an integer >= 1"):
        rank(FakeRetriever(), ["a dog"], [d / "a.wav"], top=0)


@pytest.mark.parametrize("notebook", ["/tmp/evil.ipynb", "../../evil.ipynb", "../notebooks/x.ipynb"])
def test_a_profile_may_only_run_notebooks_inside_the_notebook_folder(tmp_path, notebook):
    evil = tmp_path / "evil.ipynb"
    evil.write_text((FIXTURES / "ok_metrics.ipynb").read_text())
    (tmp_path / "nbs" / "params").mkdir(parents=True)
    prof = tmp_path / "nbs" / "params" / "shared.yaml"
    prof.write_text(f"stages:\n  - notebook: {notebook}\n")
    with pytest.raises(ProfileError, match="outside the notebooks folder"):
        load_profile(prof)
    (tmp_path / "nbs" / "link.ipynb").symlink_to(evil)  # a symlink leading out is refused too
    prof.write_text("stages:\n  - notebook: link.ipynb\n")
    with pytest.raises(ProfileError, match="outside the notebooks folder"):
        load_profile(prof)


# ============================================================================================
# 5. Faults say what happened
# ============================================================================================
@pytest.mark.parametrize("code,words", [(errno.ENOSPC, r"no space left on the disk holding .*: about 0.0 MB needed"),
                                        (errno.EROFS, "is on a read-only file system"),
                                        (errno.EACCES, "no permission to write in")])
def test_write_faults_are_reported_in_words_and_leave_nothing_half_written(tmp_path, monkeypatch, code, words):
    target = tmp_path / "metrics.json"
    target.write_text("old, complete")

    def broken_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DiskWriteError, match=words):
        write_text_atomic(target, "new")
    assert target.read_text() == "old, complete" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(trained, tmp_path, monkeypatch):
    import shutil

    import atrlib.train.checkpoints as ck
    from atrlib.models.dual import load_model

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = (out / "best" / "model.safetensors").read_bytes()

    def full_disk(model, folder):
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_model", full_disk)
    with pytest.raises(DiskWriteError, match=r"no space left on the disk holding .*writing .*best"):
        ck.save_best(out, load_model(trained / "best"))
    assert (out / "best" / "model.safetensors").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial folder


def test_cache_and_checkpoint_files_get_the_users_normal_mode(trained):
    from atrlib.paths import cache_dir

    for d in (trained / "best", trained / "last"):
        assert stat.S_IMODE(d.stat().st_mode) == dir_mode()
        for f in d.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == file_mode(), f
    entries = list((cache_dir() / "features" / "tower-embeddings").rglob("*.npy"))
    assert entries and all(stat.S_IMODE(p.stat().st_mode) == file_mode() for p in entries)


def test_a_truncated_executed_notebook_is_never_left_behind(tmp_path):
    from atrlib.runs.batch import _finish_notebook
    from atrlib.runs.records import StageResult

    partial, final = tmp_path / ".s.partial.ipynb", tmp_path / "s.ipynb"
    partial.write_text('{"cells": [{"cell_type": "code", "sou')  # a full disk cut it here
    sr = StageResult(name="s", notebook="s.ipynb")
    _finish_notebook(partial, final, sr)
    assert not partial.exists() and not final.exists() and "could not be written completely" in sr.notes[0]


# ============================================================================================
# Issue 16: real splits for the folder dataset; no training on test clips unless allowed
# ============================================================================================
def test_folder_splits_from_a_column_or_a_stable_hash(tmp_path):
    from atrlib.data.folder import hashed_split

    root = folder_dataset(tmp_path / "a", ["c0.wav,x,train", "c1.wav,y,val", "c2.wav,z,evaluation"], n=3,
                          header="file_name,caption_1,split")
    assert [load_dataset("folder", root=root, split=s).clip_ids for s in ("train", "validation", "test")] == \
        [["c0.wav"], ["c1.wav"], ["c2.wav"]]
    assert [it["split"] for it in load_dataset("folder", root=root)] == ["train", "validation", "test"]
    folder_dataset(root, ["c0.wav,x,train", "c1.wav,y,holdout", "c2.wav,z,test"], header="file_name,caption_1,split")
    with pytest.raises(DatasetError, match=r"line 3: split 'holdout'"):
        load_dataset("folder", root=root)
    names = [f"clip_{i:03d}.wav" for i in range(400)]
    before = {n: hashed_split(n) for n in names[:200]}
    after = {n: hashed_split(n) for n in names}  # 200 more files: nobody moves
    assert all(after[n] == s for n, s in before.items())
    counts = {s: list(after.values()).count(s) for s in ("train", "validation", "test")}
    assert 280 <= counts["train"] <= 360 and 20 <= counts["validation"] <= 60 and 20 <= counts["test"] <= 60
    assert hashed_split("clip_000.wav", seed=1) is not None


def test_training_refuses_overlapping_splits_unless_allowed(tmp_path):
    train = load_dataset("synth", split="train", size="tiny")
    test = load_dataset("synth", split="test", size="tiny")
    data = {"train": train, "val": train.subset(3), "test": test}
    with pytest.raises(PreflightError, match=r"train/val share 3 clip\(s\): " + train.clip_ids[0]):
        run_training(tiny_cfg(tmp_path / "r"), data=data)
    assert not (tmp_path / "r").exists()  # refused before any work
    m = run_training(tiny_cfg(tmp_path / "r", allow_split_overlap=True), data=data)["metrics"]
    saved = read_json(tmp_path / "r" / "metrics.json")
    assert saved["split_overlap"]["clips"] == {"train/val": 3} == m["split_overlap"]["clips"]
    assert "share clips" in saved["split_overlap"]["note"] and saved["splits"] == {"train": "train", "val": "train",
                                                                                 "test": "test"}


def test_a_run_made_before_an_option_existed_matches_its_default():
    """Adding a TrainConfig option must not orphan old runs: a field the old params lack counts
    as its default (reuse / resume), and any other value is still a difference."""
    from atrlib.train.preflight import config_differences
    from atrlib.train.config import TrainConfig

    new = TrainConfig(lr=3e-4).to_dict()
    old = {k: v for k, v in new.items() if k != "train_only"}
    assert config_differences(old, new) == {}
    assert config_differences(old, {**new, "train_only": "extra_heads"}) == {"train_only": ("", "extra_heads")}
    assert config_differences({**old, "lr": 1e-3}, new) == {"lr": (1e-3, 3e-4)}
