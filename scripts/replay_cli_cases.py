"""Replay a careless or hostile user's command lines against atrlib and classify each outcome.

    python scripts/replay_cli_cases.py            # all cases, a table, exit 1 on a traceback or a loss
    python scripts/replay_cli_cases.py -k store   # only the cases whose name contains "store"

Each case runs ``python -m atrlib …`` in a fresh subprocess inside a scratch folder with the
files it needs (tones, a corrupt clip, a model run, a trained run, a store, broken weight /
teacher / paraphrase / relevance / store files, a user's own folder). Outcomes:

- **clear**: exit 2, one ``error:`` line, no traceback (a user's mistake, worded);
- **ok**: exit 0 (and the case's own check of what it wrote holds);
- **traceback**: a Python traceback reached the user; **loss**: a user's file was moved or
  changed; **unexpected**: anything else (a wrong exit code, a silent empty result).

Every case states the outcome it must have. The cases are the command-line ones of the second
hostile tryout (losses, tracebacks, unclear messages, silent results); the library-level ones
are tests under ``tests/``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


@dataclass
class Case:
    name: str
    argv: List[str]
    expect: str                                    # "clear" or "ok"
    says: List[str] = field(default_factory=list)  # words the message (or output) must contain
    keep: List[str] = field(default_factory=list)  # user files that must be unchanged afterwards
    check: Optional[Callable[[Path], bool]] = None  # an extra condition on what an "ok" case wrote


def atrlib(*argv) -> List[str]:
    return [sys.executable, "-m", "atrlib", *map(str, argv)]


def run(argv, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------ fixtures
def build_fixtures(w: Path) -> None:
    import soundfile as sf

    t = np.arange(16000) / 16000
    clips = w / "clips"
    clips.mkdir()
    for i in range(4):
        sf.write(clips / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32), 16000)
    bad = w / "badclips"
    shutil.copytree(clips, bad)
    (bad / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    sf.write(w / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    (w / "userdir").mkdir()
    (w / "userdir" / "notes.txt").write_text("my own notes\n")
    (w / "mine.csv").write_text("a,b\n1,2\n")
    (w / "queries.csv").write_text("file_name,caption\ntone0.wav,a tone\n")
    (w / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (w / "latin1.csv").write_bytes("file_name,caption\ntone0.wav,un caf\xe9\n".encode("latin-1"))
    (w / "empty.pth").write_bytes(b"")
    (w / "garbage.pth").write_bytes(b"\x00garbage" * 64)
    (w / "teacher_bad.npz").write_bytes(b"not an npz")
    (w / "paraphrases.json").write_text("{not json")
    (w / "relevance.csv").write_bytes(b"\xff\xfe\x00binary")
    (w / "spec.yaml").write_text("profile: smoke\nstages: [02_train]\ntrials: [{seed: 0}]\nparameters: {epochs: nope}\n")
    # a model run (weights + config) and a short trained run (best/, last/, metrics)
    r = run(atrlib("train", "dataset=synth", "size=tiny", "epochs=1", "device=cpu", "progress=false", "model=synth-tiny",
                   f"out_dir={w / 'trained'}"), w, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"fixture: training failed\n{r.stderr[-2000:]}")
    r = run(atrlib("index", "build", "--model", w / "trained" / "best", "--audio", clips, "--index", w / "store"), w)
    if r.returncode != 0:
        raise SystemExit(f"fixture: index build failed\n{r.stderr[-2000:]}")
    shutil.copytree(w / "store", w / "store_escape")
    info = json.loads((w / "store_escape" / "store.json").read_text())
    info["embeddings"] = "../../../../etc/passwd"
    (w / "store_escape" / "store.json").write_text(json.dumps(info))
    shutil.copytree(w / "store", w / "store_truncated")
    for p in (w / "store_truncated").iterdir():
        if p.suffix in (".npy", ".faiss"):
            p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 3)])


def cases(w: Path) -> List[Case]:
    trained, best, store = w / "trained", w / "trained" / "best", w / "store"
    return [
        # --- losses: --overwrite moves only what the same command wrote
        Case("search --out a user's folder --overwrite", atrlib("search", "--system", best, "--audio", w / "clips",
             "--query", "a tone", "--out", w / "userdir", "--overwrite"), "clear", ["userdir"], ["userdir/notes.txt"]),
        Case("search --audio X --out X --overwrite", atrlib("search", "--system", best, "--audio", w / "clips",
             "--query", "a tone", "--out", w / "clips", "--overwrite"), "clear", ["input"], ["clips/tone0.wav"]),
        Case("search --out a user's CSV --overwrite", atrlib("search", "--system", best, "--audio", w / "clips",
             "--query", "a tone", "--out", w / "mine.csv", "--overwrite"), "clear", ["mine.csv"], ["mine.csv"]),
        Case("evaluate --system RUN --out RUN --overwrite", atrlib("evaluate", "--system", trained, "--dataset", "synth",
             "--size", "tiny", "--out", trained, "--overwrite"), "clear", ["input"], ["trained/params.json"]),
        Case("evaluate --out a user's folder --overwrite", atrlib("evaluate", "--system", trained, "--dataset", "synth",
             "--size", "tiny", "--out", w / "userdir", "--overwrite"), "clear", ["userdir"], ["userdir/notes.txt"]),
        Case("evaluate --out naming a file", atrlib("evaluate", "--system", trained, "--dataset", "synth", "--size", "tiny",
             "--out", w / "mine.csv"), "clear", ["mine.csv"], ["mine.csv"]),
        Case("train out_dir= a user's folder overwrite", atrlib("train", "dataset=synth", "size=tiny", "epochs=1",
             "model=synth-tiny", f"out_dir={w / 'userdir'}", "--overwrite"), "clear", ["userdir"], ["userdir/notes.txt"]),
        # --- silent wrong results
        Case("train out_dir= (empty)", atrlib("train", "dataset=synth", "size=tiny", "epochs=1", "out_dir="), "clear",
             ["out_dir"]),
        Case("train resume with epochs raised (cosine)", atrlib("train", "dataset=synth", "size=tiny", "epochs=2",
             "device=cpu", "progress=false", "model=synth-tiny", "resume=true", f"out_dir={trained}"), "clear",
             ["epochs 1 -> 2"], ["trained/params.json"]),
        Case("run a profile with -p root=/nonexistent -p size=tiny", atrlib("run", "--profile", "xiaomi2023", "-p",
             "size=tiny", "-p", "root=/nonexistent", "--out", w / "xrun"), "clear", ["/nonexistent"]),
        Case("search --index … --rerank 16", atrlib("search", "--index", store, "--query", "a tone", "--rerank", "16"),
             "clear", ["--rerank"]),
        Case("search an intact store", atrlib("search", "--index", store, "--query", "a tone", "--top", "2"), "ok",
             ["tone"]),
        # --- tracebacks that must be one message naming the file
        Case("search --audio with a corrupt clip", atrlib("search", "--system", best, "--audio", w / "badclips",
             "--query", "a tone"), "clear", ["broken.wav"]),
        Case("search --audio with a corrupt clip, --on-error skip", atrlib("search", "--system", best, "--audio",
             w / "badclips", "--query", "a tone", "--on-error", "skip"), "ok", ["tone"]),
        Case("search --like a CSV", atrlib("search", "--system", best, "--audio", w / "clips", "--like", w / "mine.csv"),
             "clear", ["mine.csv"]),
        Case("search --like a NaN wav", atrlib("search", "--system", best, "--audio", w / "clips", "--like", w / "nan.wav"),
             "clear", ["nan.wav"]),
        Case("search --rerank -1", atrlib("search", "--system", best, "--audio", w / "clips", "--query", "x",
             "--rerank", "-1"), "clear", ["--rerank"]),
        Case("search --audio a binary CSV", atrlib("search", "--system", best, "--audio", w / "binary.csv", "--query",
             "x"), "clear", ["binary.csv"]),
        Case("search --audio a latin-1 CSV without --encoding", atrlib("search", "--system", best, "--audio",
             w / "latin1.csv", "--query", "x"), "clear", ["latin1.csv"]),
        Case("search a store naming ../../../../etc/passwd", atrlib("search", "--index", w / "store_escape", "--query",
             "x"), "clear", ["store_escape"]),
        Case("search a truncated store", atrlib("search", "--index", w / "store_truncated", "--query", "x"), "clear",
             ["store_truncated"]),
        Case("search --index a folder that is not a store", atrlib("search", "--index", w / "userdir", "--query", "x"),
             "clear", ["userdir"]),
        Case("index build into a training run", atrlib("index", "build", "--model", best, "--audio", w / "clips",
             "--index", trained), "clear", ["trained"], ["trained/params.json"]),
        Case("train model=no_such_model", atrlib("train", "dataset=synth", "size=tiny", "model=no_such_model",
             f"out_dir={w / 'r1'}"), "clear", ["no_such_model"]),
        Case("train size=huge", atrlib("train", "dataset=synth", "size=huge", f"out_dir={w / 'r2'}"), "clear", ["huge"]),
        Case("train weights= an empty file", atrlib("train", "dataset=synth", "size=tiny", "epochs=1", "model=cau2023-cnn14-tiny",
             f"model_overrides={{audio: {{kwargs: {{weights: {w / 'empty.pth'}}}}}}}", f"out_dir={w / 'r3'}"), "clear",
             ["empty.pth"]),
        Case("train model_overrides with an unknown field", atrlib("train", "dataset=synth", "size=tiny",
             "model_overrides={audio: {segmnts: 2}}", f"out_dir={w / 'r4'}"), "clear", ["segmnts"]),
        Case("train a teacher file that is not an npz", atrlib("train", "dataset=synth", "size=tiny", "epochs=1",
             "model=synth-tiny", "loss=distill", f"loss_kwargs={{distill: {{teacher: [{w / 'teacher_bad.npz'}]}}}}",
             f"out_dir={w / 'r5'}"), "clear", ["teacher_bad.npz"]),
        Case("train a malformed paraphrase file", atrlib("train", "dataset=synth", "size=tiny", "epochs=1",
             "model=synth-tiny", f"paraphrases={w / 'paraphrases.json'}", "paraphrase_prob=0.5", f"out_dir={w / 'r6'}"),
             "clear", ["paraphrases.json"]),
        Case("train an option among the overrides", atrlib("train", "dataset=synth", "--overwrite", "size=tiny",
             "epochs=1", "model=synth-tiny", "device=cpu", "progress=false", f"out_dir={w / 'r9'}"), "ok"),
        Case("evaluate a binary relevance file", atrlib("evaluate", "--system", trained, "--dataset", "synth", "--size",
             "tiny", "--relevance", w / "relevance.csv", "--out", w / "ev1"), "clear", ["relevance.csv"]),
        Case("run -p epochs=abc", atrlib("run", "--profile", "smoke", "-p", "epochs=abc", "--out", w / "r7"), "clear",
             ["epochs"]),
        Case("run --stages 99_nope", atrlib("run", "--profile", "smoke", "--stages", "99_nope", "--out", w / "r8"),
             "clear", ["99_nope"]),
        Case("sweep a spec with a bad value", atrlib("sweep", w / "spec.yaml", "--out", w / "sw", "--executor", "serial"),
             "clear", ["epochs"]),
        Case("moments evaluate a missing file", atrlib("moments", "evaluate", "--pred", w / "nope.jsonl", "--gt",
             w / "nope2.jsonl", "--out", w / "m.json"), "clear", ["nope"]),
        Case("output into /proc", atrlib("search", "--system", best, "--audio", w / "clips", "--query", "x", "--out",
             "/proc/atrlib.csv"), "clear", ["/proc"]),
    ]


def classify(case: Case, r: subprocess.CompletedProcess, w: Path, before: dict) -> str:
    err, out = r.stderr, r.stdout
    changed = [k for k, v in before.items() if not (w / k).exists() or (w / k).read_bytes() != v]
    if changed:
        return "loss"
    if "Traceback (most recent call last)" in err:
        return "traceback"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if r.returncode == 2 and len(errors) == 1 and all(s in errors[0] for s in case.says):
        return "clear"
    if r.returncode == 2 and "usage:" in err and all(s in err for s in case.says):
        return "clear"  # argparse: usage line plus one message
    if r.returncode == 0 and all(s in out + err for s in case.says) and (case.check is None or case.check(w)):
        return "ok"
    return "unexpected"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    a = ap.parse_args(argv)
    w = Path(tempfile.mkdtemp(prefix="atrlib-replay-"))
    t0 = time.perf_counter()
    print(f"scratch folder {w}; building fixtures (a 1-epoch tiny training, a store) …", flush=True)
    build_fixtures(w)
    rows, counts = [], {}
    for case in [c for c in cases(w) if a.k in c.name]:
        before = {k: (w / k).read_bytes() for k in case.keep}
        r = run(case.argv, w)
        got = classify(case, r, w, before)
        counts[got] = counts.get(got, 0) + 1
        msg = next((ln for ln in r.stderr.splitlines() if ln.startswith("error:")), "").replace(str(w) + "/", "")
        rows.append((case.name, case.expect, got, msg[:110]))
        print(f"{'✓' if got == case.expect else '✗'} {case.name}: {got}", flush=True)
    print("\n| case | must be | outcome | message |\n|---|---|---|---|")
    for name, expect, got, msg in rows:
        print(f"| {name} | {expect} | {got if got == expect else '**' + got + '**'} | {msg.replace('|', '/')} |")
    print(f"\n{len(rows)} cases in {time.perf_counter() - t0:.0f} s: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if not a.keep:
        shutil.rmtree(w, ignore_errors=True)
    return 0 if all(got == expect for _, expect, got, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
