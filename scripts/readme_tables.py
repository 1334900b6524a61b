"""The README's "Results" tables, generated from a demo run (never typed by hand), and a check
of another run against them with tolerance bands.

    make readme      # = the two commands below, after `make demo`
    python scripts/readme_tables.py reports/demo --record tests/fixtures/readme_expected.json --write README.md
    python scripts/readme_tables.py reports/demo --check tests/fixtures/readme_expected.json

The numbers come from the run's ``run.json`` and each stage's ``metrics.json`` (what the run's
``summary.md`` shows). ``--record`` stores them (the test ``tests/core/test_readme_tables.py``
checks that README.md's tables are exactly what they render to); ``--write`` replaces the text
between the marker lines ``<!-- demo-results:begin -->`` and ``<!-- demo-results:end -->``.

``--check`` compares a run (say, on another CPU) with the recorded numbers: each recorded test
number's 95 % CI is its tolerance band — training trajectories move with the CPU's
floating-point kernels, so digits differ between machines; a number outside its band, or a
verdict over seeds that flips, fails the check (exit 1). Every "best" is the one chosen on the
validation split.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

BEGIN = "<!-- demo-results:begin -->"
END = "<!-- demo-results:end -->"


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 3)


def _clip(x: float) -> float:
    return min(1.0, max(0.0, float(x)))


def _machine(env: dict) -> str:
    cpu = env.get("cpu") or "an unrecorded CPU"
    extra = ", ".join(x for x in (env.get("vector_unit"), f"{env['cpu_count']} cores" if env.get("cpu_count") else "") if x)
    return f"{cpu} ({extra})" if extra else cpu


def _check(c: Optional[dict]) -> Optional[dict]:
    if not c:
        return None
    return {"n": c["n"], "mean": _r(c["mean"]), "sd": _r(c["sd"]), "p": _r(c.get("p_value")),
            "distinguishable": bool(c["distinguishable"])}


def extract(run_dir: str | Path) -> Dict[str, Any]:
    """The numbers the README shows, from a finished run folder, rounded as shown."""
    run = Path(run_dir)
    record = _read(run / "run.json")
    env = record.get("environment") or {}
    stages = {s["name"]: s for s in record["stages"]}
    out: Dict[str, Any] = {"profile": record.get("profile"), "duration_s": round(float(record.get("duration_s") or 0)),
                           "stages_ok": sum(s["status"] == "ok" for s in record["stages"]),
                           "stages": len(record["stages"]), "machine": _machine(env), "torch": env.get("torch")}
    if (run / "02_train" / "metrics.json").exists():
        m = _read(run / "02_train" / "metrics.json")
        p = _read(run / "02_train" / "params.json")
        hist = _read(run / "02_train" / "history.json")
        chosen = max(hist, key=lambda h: h["val_mAP@10"])
        t, ci = m["test"]["t2a"], m["test"]["t2a_ci"]["mAP@10"]
        chance = None
        if (run / "03_evaluate" / "metrics.json").exists():  # 03 scores the same run on the same split
            chance = _read(run / "03_evaluate" / "metrics.json")["t2a"]["mAP@10_chance"]
        seeds = m.get("seeds") or {}
        mean = m.get("seed_mean")
        sd = None
        if len(seeds) > 1:
            vals = [s["test mAP@10"] for s in seeds.values()]
            mu = sum(vals) / len(vals)
            sd = (sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
        out["train"] = {"loss": p["loss"], "epochs": m["epochs_run"], "chosen_epoch": chosen["epoch"],
                        "val_mAP@10": _r(chosen["val_mAP@10"]), "mAP@10": _r(t["mAP@10"]),
                        "low": _r(_clip(ci["low"])), "high": _r(_clip(ci["high"])),
                        "R@1": _r(t["R@1"]), "R@10": _r(t["R@10"]), "a2t_mAP@10": _r(m["test"]["a2t"]["mAP@10"]),
                        "chance": _r(chance), "seconds": round(float(stages["02_train"].get("duration_s") or 0)),
                        "seeds": max(1, len(seeds)), "seed_sd": _r(sd),
                        "seed_mean": None if not mean else {k: _r(mean[k]) for k in ("value", "low", "high")},
                        "above_chance_every_seed": None if chance is None or not seeds else
                        all(s["low"] > chance for s in seeds.values())}
    if (run / "04_loss_ablation" / "metrics.json").exists():
        m = _read(run / "04_loss_ablation" / "metrics.json")
        p = _read(run / "04_loss_ablation" / "params.json")
        out["ablation"] = {
            "losses": len(m["losses"]), "seeds": len(p.get("seeds", [])), "epochs": p.get("epochs"),
            "baseline": m["baseline"], "chosen": m["best_loss"], "check": _check(m.get("best_loss_seed_check")),
            "rows": [{"loss": k, "val": _r(r["val_mAP@10"]), "test": _r(r["mAP@10"]), "low": _r(r["low"]),
                      "high": _r(r["high"]), "sd": _r(r.get("seed_sd")), "diff": _r(r.get("diff_vs_baseline")),
                      "p": _r(r.get("p_value"))}
                     for k, r in m["losses"].items()]}
    if (run / "05_ensemble" / "metrics.json").exists():
        m = _read(run / "05_ensemble" / "metrics.json")
        single = m["ensembles"].get(f"best single system: {m['best_single']}", {})
        out["ensemble"] = {"systems": len(m["systems"]), "seeds": len(m.get("per_seed") or {}) or 1,
                           "chosen": m["best_method"],
                           "val": _r(m["best_method_val_mAP@10"]), "test": _r(m["best_method_test_mAP@10"]),
                           "low": _r(m["best_method_test_low"]), "high": _r(m["best_method_test_high"]),
                           "best_single": m["best_single"], "best_single_test": _r(m["best_single_test_mAP@10"]),
                           "best_single_low": _r(single.get("low")), "best_single_high": _r(single.get("high")),
                           "diff": _r(m["best_method_vs_single"]), "p": _r(m.get("best_method_p_value")),
                           "check": _check(m.get("seed_check"))}
    return out


def _p(p: Optional[float]) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _dur(s: float) -> str:
    return f"{int(s // 60)} min {int(s % 60):02d} s" if s >= 60 else f"{int(s)} s"


def _verdict(c: Optional[dict], a: str, b: str) -> str:
    if not c:
        return "—"
    spread = f"{c['mean']:+.3f} (sd {c['sd']:.3f}, {c['n']} seeds)" if c.get("sd") is not None else f"{c['mean']:+.3f} (1 seed)"
    word = (("beats" if c["mean"] > 0 else "falls below") if c["distinguishable"] else "is not distinguishable from")
    return f"{spread}: {a} {word} {b}; p {_p(c.get('p'))}"


def render(n: Dict[str, Any]) -> str:
    """Markdown tables from :func:`extract`'s numbers (deterministic: same numbers, same text)."""
    lines = [f"`make demo` on {n.get('machine', 'an unrecorded CPU')}, torch {n.get('torch') or '?'} "
             f"({n['stages_ok']} of {n['stages']} stages ok, {_dur(n['duration_s'])} end to end). "
             "Every choice is made on the validation split; test numbers are for what was chosen, with a 95 % "
             "jackknife CI over test captions. Training trajectories move with the CPU's floating-point kernels "
             "as they do with the seed: on another CPU expect each number inside its interval, not the same "
             "digits (`python scripts/readme_tables.py reports/demo --check tests/fixtures/readme_expected.json` "
             "compares a run with these bands). A comparison is stated as a finding only when it holds in every "
             "seed and its paired test is significant.", "",
             "| stage | chosen on validation | test t2a mAP@10 (95 % CI) | compared with | over seeds |",
             "|---|---|---|---|---|"]
    if "train" in n:
        t = n["train"]
        chance = f"; chance {t['chance']:.3f}" if t.get("chance") is not None else ""
        first = (f"**{t['seed_mean']['value']:.3f}** ({t['seed_mean']['low']:.3f}–{t['seed_mean']['high']:.3f}), "
                 f"mean of {t['seeds']} seeds, seed sd {t['seed_sd']:.3f}; seed 0: {t['mAP@10']:.3f} "
                 f"({t['low']:.3f}–{t['high']:.3f})" if t.get("seed_mean") else
                 f"**{t['mAP@10']:.3f}** ({t['low']:.3f}–{t['high']:.3f})")
        every = {True: "above chance in every seed", False: "not above chance in every seed",
                 None: "—"}[t.get("above_chance_every_seed")]
        lines.append(f"| 02 train ({t['loss']}, {t['epochs']} epochs, {t['seeds']} seeds, {t['seconds']} s) | "
                     f"epoch {t['chosen_epoch']} (seed 0; val {t['val_mAP@10']:.3f}) | {first}{chance}; "
                     f"R@1 {t['R@1']:.3f}, R@10 {t['R@10']:.3f}; a2t mAP@10 {t['a2t_mAP@10']:.3f} | chance | {every} |")
    if "ablation" in n:
        a = n["ablation"]
        row = next(r for r in a["rows"] if r["loss"] == a["chosen"])
        base = next((r for r in a["rows"] if r["loss"] == a["baseline"]), None)
        vs = "— (it is the baseline)" if a["chosen"] == a["baseline"] else f"{a['baseline']} {base['test']:.3f}"
        sd = f", seed sd {row['sd']:.3f}" if row.get("sd") is not None else ""
        lines.append(f"| 04 loss ablation ({a['losses']} losses × {a['seeds']} seeds, {a['epochs']} epochs) | "
                     f"{a['chosen']} (val {row['val']:.3f}) | **{row['test']:.3f}** ({row['low']:.3f}–{row['high']:.3f}){sd} "
                     f"| {vs} | {_verdict(a.get('check'), a['chosen'], a['baseline'])} |")
    if "ensemble" in n:
        e = n["ensemble"]
        lines.append(f"| 05 ensemble ({e['systems']} systems per seed, {e['seeds']} seeds) | {e['chosen']} (val {e['val']:.3f}) | "
                     f"**{e['test']:.3f}** ({e['low']:.3f}–{e['high']:.3f}), seed 0 | best single by validation, "
                     f"{e['best_single']}: {e['best_single_test']:.3f} ({e['diff']:+.3f}) | "
                     f"{_verdict(e.get('check'), 'the chosen ensemble', 'the best single system')} |")
    if "ablation" in n:
        a = n["ablation"]
        lines += ["", f"Loss ablation, ordered by validation mAP@10 (test mAP@10 averaged over seeds per caption; "
                      f"p: paired permutation test against {a['baseline']} on test):", "",
                  "| loss | val mAP@10 | test mAP@10 (95 % CI) | seed sd | vs " + a["baseline"] + " | p |",
                  "|---|---|---|---|---|---|"]
        for r in a["rows"]:
            diff = "—" if r["diff"] is None else f"{r['diff']:+.3f}"
            sd = "—" if r.get("sd") is None else f"{r['sd']:.3f}"
            name = f"**{r['loss']}** (chosen)" if r["loss"] == a["chosen"] else r["loss"]
            lines.append(f"| {name} | {r['val']:.3f} | {r['test']:.3f} ({r['low']:.3f}–{r['high']:.3f}) | {sd} | {diff} "
                         f"| {_p(r['p'])} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the check
def check(recorded: Dict[str, Any], run: Dict[str, Any]) -> List[dict]:
    """One row per compared quantity: ``what, recorded, low, high, this_run, ok``. A number is
    ok when this run's value lies inside the recorded 95 % CI; a verdict is ok when it is the
    same. Quantities a run does not have are left out."""
    rows: List[dict] = []

    def band(what, rec_value, low, high, value):
        if None in (rec_value, low, high, value):
            return
        rows.append({"what": what, "recorded": rec_value, "low": low, "high": high, "this_run": value,
                     "ok": low <= value <= high})

    def same(what, rec, now):
        if rec is None or now is None:
            return
        rows.append({"what": what, "recorded": rec, "low": None, "high": None, "this_run": now, "ok": rec == now})

    rt, nt = recorded.get("train"), run.get("train")
    if rt and nt:
        if rt.get("seed_mean") and nt.get("seed_mean"):
            band("02 test mAP@10, mean of seeds", rt["seed_mean"]["value"], rt["seed_mean"]["low"],
                 rt["seed_mean"]["high"], nt["seed_mean"]["value"])
        band("02 test mAP@10, seed 0", rt["mAP@10"], rt["low"], rt["high"], nt["mAP@10"])
        same("02 above chance in every seed", rt.get("above_chance_every_seed"), nt.get("above_chance_every_seed"))
    ra, na = recorded.get("ablation"), run.get("ablation")
    if ra and na:
        now = {r["loss"]: r for r in na["rows"]}
        for r in ra["rows"]:
            if r["loss"] in now:
                band(f"04 test mAP@10 of {r['loss']}", r["test"], r["low"], r["high"], now[r["loss"]]["test"])
        same("04 chosen loss vs baseline: distinguishable", (ra.get("check") or {}).get("distinguishable"),
             (na.get("check") or {}).get("distinguishable"))
    re_, ne = recorded.get("ensemble"), run.get("ensemble")
    if re_ and ne:
        if re_["chosen"] == ne["chosen"]:
            band(f"05 test mAP@10 of {re_['chosen']}", re_["test"], re_["low"], re_["high"], ne["test"])
        if re_["best_single"] == ne["best_single"]:
            band(f"05 test mAP@10 of {re_['best_single']}", re_["best_single_test"], re_.get("best_single_low"),
                 re_.get("best_single_high"), ne["best_single_test"])
        same("05 chosen ensemble vs best single: distinguishable", (re_.get("check") or {}).get("distinguishable"),
             (ne.get("check") or {}).get("distinguishable"))
    return rows


def check_table(rows: List[dict]) -> str:
    out = ["| quantity | README | band (95 % CI) | this run | inside |", "|---|---|---|---|---|"]
    for r in rows:
        b = "—" if r["low"] is None else f"{r['low']:.3f}–{r['high']:.3f}"
        fmt = (lambda v: f"{v:.3f}") if isinstance(r["recorded"], float) else str
        out.append(f"| {r['what']} | {fmt(r['recorded'])} | {b} | {fmt(r['this_run'])} | {'yes' if r['ok'] else '**no**'} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ markers
def replace_between_markers(text: str, block: str) -> str:
    """``text`` with everything between the :data:`BEGIN` and :data:`END` lines replaced by
    ``block``; raises ValueError naming the missing marker."""
    if BEGIN not in text or END not in text:
        missing = BEGIN if BEGIN not in text else END
        raise ValueError(f"marker {missing!r} not found: put {BEGIN} and {END} on their own lines where the tables go")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block.rstrip()}\n{END}{tail}"


def between_markers(text: str) -> Optional[str]:
    """The text between the markers (stripped), or None when they are absent."""
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?", help="a finished demo run folder (reports/demo)")
    ap.add_argument("--from-record", help="render from recorded numbers (JSON) instead of a run folder")
    ap.add_argument("--record", help="also write the numbers to this JSON file")
    ap.add_argument("--write", help="replace the tables between the markers of this Markdown file")
    ap.add_argument("--check", metavar="RECORD", help="compare the run with recorded numbers (JSON): exit 1 when a "
                                                      "number leaves its band or a verdict flips")
    a = ap.parse_args(argv)
    if not a.run_dir and not a.from_record:
        ap.error("give a run folder or --from-record FILE")
    if a.check and not a.run_dir:
        ap.error("--check compares a run folder with the record: give the run folder")
    numbers = _read(Path(a.from_record)) if a.from_record else extract(a.run_dir)
    if a.check:
        rows = check(_read(Path(a.check)), numbers)
        sys.stdout.write(check_table(rows))
        bad = [r["what"] for r in rows if not r["ok"]]
        print(f"{len(rows) - len(bad)} of {len(rows)} inside their bands" + (f"; outside: {', '.join(bad)}" if bad else ""))
        return 1 if bad else 0
    block = render(numbers)
    if a.record:
        Path(a.record).write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    if a.write:
        p = Path(a.write)
        p.write_text(replace_between_markers(p.read_text(encoding="utf-8"), block), encoding="utf-8")
    elif not a.record:
        sys.stdout.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
