"""Training-step throughput of each seed recipe's main model at its full size, on this machine.

    python benchmarks/bench_recipe_steps.py [recipes...] [--clips 2] [--seconds 10] [--json PATH]

For each recipe (``atrlib.recipes``), its ``base["model"]`` built with
``create_model(name, pretrained=False)``: every tower at its configured size with random weights,
nothing downloaded (the text towers' architectures and a stand-in tokenizer come offline). One
training step as :func:`atrlib.train.loop.fit` takes it on ``--clips`` clips of ``--seconds`` s
and as many captions: the model's forward, symmetric InfoNCE, backward, gradient clipping at 1.0,
AdamW (the loop's parameter groups and optimiser), ``zero_grad``. A frozen tower runs once per
clip in training (its outputs are cached), so it is timed apart ("frozen towers ms/clip") and the
step starts from its outputs, as ``fit`` does. Extra heads (Q-Former, cross-attention) are built
and counted, but their cross-modal loss terms (ATC/ATM/ATG, ACML/MLML) are not in the timed step:
the step is the dual encoder's. GFLOP/step is ``FlopCounterMode`` on the warm-up step.

Each model runs in its own subprocess (peak RSS is its own): 1 warm-up + ``--reps`` (2) timed
steps, best shown. Measured while other jobs may share the machine: absolute speeds are lower
bounds. A model that cannot be built without the network yet says so in its row.
"""
import atrlib  # noqa: F401  (thread settings first)

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_towers import markdown, timed  # noqa: E402

LOAD_NOTE = "measured while other jobs may share the machine: absolute speeds are lower bounds"

NOT_YET = "needs pretrained=False (not yet available)"
CAPTIONS = ["a dog barks twice while cars pass on a wet street", "rain falls on a metal roof and thunder rolls"]


def recipe_models() -> dict:
    """recipe name -> its main model config name (``base["model"]``), in the reports' order."""
    from atrlib.recipes import get_recipe, recipe_names

    return {r: get_recipe(r).base["model"] for r in recipe_names()}


def offline_build_available() -> bool:
    """Whether model configs take ``pretrained`` (False: random weights, nothing downloaded)."""
    from atrlib.models.dual import ModelConfig

    return "pretrained" in {f.name for f in dataclasses.fields(ModelConfig)}


def step_row(recipe: str, model_name: str, clips: int, seconds: float, reps: int) -> dict:
    """Build the model, then 1 warm-up (FLOP-counted) + ``reps`` timed training steps."""
    from torch.utils.flop_counter import FlopCounterMode

    from atrlib.losses import get_loss
    from atrlib.models.dual import create_model
    from atrlib.train.loop import adamw, param_groups

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = create_model(model_name, pretrained=False)
    build_s = time.perf_counter() - t0
    model.train()
    cfg = model.config
    wave = 0.1 * torch.randn(clips, int(seconds * model.sample_rate))               # (clips, samples)
    captions = (CAPTIONS * clips)[:clips]
    ids = torch.arange(clips)                                                        # clip i <-> caption i
    frozen_s = 0.0
    with torch.no_grad():                                                            # cached once in training
        audio_in = wave
        if cfg.audio.frozen:
            frozen_s += timed(lambda: model.audio_features(wave))
            audio_in = model.audio_features(wave)                                   # (clips, audio_dim)
        text_in = captions
        if cfg.text.frozen:
            frozen_s += timed(lambda: model.text_features(captions))
            text_in = model.text_features(captions)                                 # (clips, text_dim)
    loss_fn = get_loss("infonce")
    optimizer = adamw(param_groups(model, lr=1e-5, head_lr=None, weight_decay=1e-4), lr=1e-5)
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def step():
        a, t = model(audio_in, text_in)                                              # (clips, E) each
        loss = sum(loss_fn(a, t, ids, model.logit_scale).values())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as fc:
        step()                                                                       # the warm-up
    times = [timed(step) for _ in range(reps)]
    best = min(times)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    heads = ", ".join(sorted(getattr(cfg, "heads", {}) or {})) or "—"
    return {"recipe": recipe, "model": model_name, "audio": cfg.audio.name, "text": _text_name(cfg),
            "extra_heads": heads, "trainable_m": trainable / 1e6, "frozen_m": (total - trainable) / 1e6,
            "gflop_per_step": fc.get_total_flops() / 1e9, "ms_per_step": 1000 * best, "clips_per_s": clips / best,
            "frozen_ms_per_clip": 1000 * frozen_s / clips if frozen_s else None, "build_s": build_s,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _text_name(cfg) -> str:
    return cfg.text.kwargs.get("name_or_path", cfg.text.name)


COLUMNS = [("recipe", "recipe", ""), ("model config", "model", ""), ("audio / text", "towers", ""),
           ("extra heads", "extra_heads", ""), ("trainable M", "trainable_m", ".1f"), ("frozen M", "frozen_m", ".1f"),
           ("GFLOP/step", "gflop_per_step", ".1f"), ("ms/step", "ms_per_step", ".0f"), ("clips/s", "clips_per_s", ".2f"),
           ("frozen towers ms/clip (once)", "frozen_ms", ""), ("peak RSS MiB", "peak_rss_mib", ".0f")]


def _display(row: dict) -> dict:
    out = dict(row)
    if "audio" in row:
        out["towers"] = f"{row['audio']} / {row['text']}"
        f = row.get("frozen_ms_per_clip")
        out["frozen_ms"] = "—" if f is None else f"{f:.0f}"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", help="recipe names (default: every registered recipe)")
    ap.add_argument("--clips", type=int, default=2, help="clips (and captions) per step")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--reps", type=int, default=2, help="timed steps after one warm-up")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--one", nargs=2, metavar=("RECIPE", "MODEL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(step_row(*a.one, a.clips, a.seconds, a.reps)))
        return 0
    models = recipe_models()
    names = a.recipes or list(models)
    ready = offline_build_available()
    print(f"one training step per recipe model at full size, {a.clips} clips of {a.seconds:g} s + {a.clips} captions, "
          f"fp32, cpu, torch {torch.__version__}, {torch.get_num_threads()} threads, 1 warm-up + {a.reps} timed "
          f"(best shown); {LOAD_NOTE}\n", flush=True)
    rows = []
    for r in names:
        if r not in models:
            rows.append({"recipe": r, "note": "not a registered recipe"})
            continue
        if not ready:
            rows.append({"recipe": r, "model": models[r], "note": NOT_YET})
            continue
        cmd = [sys.executable, __file__, "--one", r, models[r], "--clips", str(a.clips), "--seconds", str(a.seconds),
               "--reps", str(a.reps)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            lines = p.stderr.strip().splitlines()
            rows.append({"recipe": r, "model": models[r], "note": f"failed: {lines[-1] if lines else p.returncode}"})
        else:
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(markdown([_display(x) for x in rows], COLUMNS))
    if a.json:
        Path(a.json).write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                            "clips": a.clips, "seconds": a.seconds, "note": LOAD_NOTE,
                                            "rows": rows}, indent=2))
    return int(any(x.get("note", "").startswith("failed") for x in rows))


if __name__ == "__main__":
    sys.exit(main())
