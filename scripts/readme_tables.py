"""The README's "Results" tables, generated from a demo run (never typed by hand).

    python scripts/readme_tables.py reports/demo                      # print the Markdown
    python scripts/readme_tables.py reports/demo --record tests/fixtures/readme_expected.json
    python scripts/readme_tables.py --from-record tests/fixtures/readme_expected.json --write README.md

``--record`` stores the numbers the tables show (the test ``tests/core/test_readme_tables.py``
checks that README.md's tables are exactly what these numbers render to); ``--write``
replaces the text between the two marker lines ``<!-- demo-results:begin -->`` and
``<!-- demo-results:end -->`` of a Markdown file. Every "best" is the one chosen on the
validation split; test numbers are shown for it, with their 95 % CI and p-value.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional

BEGIN = "<!-- demo-results:begin -->"
END = "<!-- demo-results:end -->"


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _clip(x: float) -> float:
    return min(1.0, max(0.0, float(x)))


def extract(run_dir: str | Path) -> Dict[str, Any]:
    """The numbers the README shows, from a finished run folder (``run.json`` and each
    stage's ``metrics.json`` / ``history.json``), rounded as shown."""
    run = Path(run_dir)
    record = _read(run / "run.json")
    stages = {s["name"]: s for s in record["stages"]}
    out: Dict[str, Any] = {"profile": record.get("profile"), "duration_s": round(float(record.get("duration_s") or 0)),
                           "stages_ok": sum(s["status"] == "ok" for s in record["stages"]),
                           "stages": len(record["stages"])}
    if (run / "02_train" / "metrics.json").exists():
        m = _read(run / "02_train" / "metrics.json")
        p = _read(run / "02_train" / "params.json")
        hist = _read(run / "02_train" / "history.json")
        chosen = max(hist, key=lambda h: h["val_mAP@10"])
        t, ci = m["test"]["t2a"], m["test"]["t2a_ci"]["mAP@10"]
        n_items = chance = None
        if (run / "03_evaluate" / "metrics.json").exists():  # 03 scores the same run on the same split
            ev = _read(run / "03_evaluate" / "metrics.json")
            n_items, chance = ev["n_items"], ev["t2a"]["mAP@10_chance"]
        out["train"] = {"loss": p["loss"], "epochs": m["epochs_run"], "chosen_epoch": chosen["epoch"],
                        "val_mAP@10": round(chosen["val_mAP@10"], 3), "mAP@10": round(t["mAP@10"], 3),
                        "low": round(_clip(ci["low"]), 3), "high": round(_clip(ci["high"]), 3),
                        "R@1": round(t["R@1"], 3), "R@10": round(t["R@10"], 3),
                        "a2t_mAP@10": round(m["test"]["a2t"]["mAP@10"], 3),
                        "chance": None if chance is None else round(chance, 3), "n_items": n_items,
                        "seconds": round(float(stages["02_train"].get("duration_s") or 0))}
    if (run / "04_loss_ablation" / "metrics.json").exists():
        m = _read(run / "04_loss_ablation" / "metrics.json")
        p = _read(run / "04_loss_ablation" / "params.json")
        out["ablation"] = {
            "losses": len(m["losses"]), "seeds": len(p.get("seeds", [])), "epochs": p.get("epochs"),
            "baseline": m["baseline"], "chosen": m["best_loss"],
            "rows": [{"loss": k, "val": round(r["val_mAP@10"], 3), "test": round(r["mAP@10"], 3),
                      "low": round(r["low"], 3), "high": round(r["high"], 3),
                      "diff": None if r.get("diff_vs_baseline") is None else round(r["diff_vs_baseline"], 3),
                      "p": None if r.get("p_value") is None else round(r["p_value"], 3)}
                     for k, r in m["losses"].items()]}
    if (run / "05_ensemble" / "metrics.json").exists():
        m = _read(run / "05_ensemble" / "metrics.json")
        out["ensemble"] = {"systems": len(m["systems"]), "chosen": m["best_method"],
                           "val": round(m["best_method_val_mAP@10"], 3), "test": round(m["best_method_test_mAP@10"], 3),
                           "low": round(m["best_method_test_low"], 3), "high": round(m["best_method_test_high"], 3),
                           "best_single": m["best_single"], "best_single_test": round(m["best_single_test_mAP@10"], 3),
                           "diff": round(m["best_method_vs_single"], 3),
                           "p": None if m.get("best_method_p_value") is None else round(m["best_method_p_value"], 3)}
    return out


def _p(p: Optional[float]) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _dur(s: float) -> str:
    return f"{int(s // 60)} min {int(s % 60):02d} s" if s >= 60 else f"{int(s)} s"


def render(n: Dict[str, Any]) -> str:
    """Markdown tables from :func:`extract`'s numbers (deterministic: same numbers, same text)."""
    lines = [f"`make demo` ({n['stages_ok']} of {n['stages']} stages ok, {_dur(n['duration_s'])} end to end). "
             "Every choice is made on the validation split; test numbers are for what was chosen, "
             "with a 95 % jackknife CI over test captions and, against a reference, a paired test's p-value.", "",
             "| stage | chosen on validation | test t2a mAP@10 (95 % CI) | compared with | p |",
             "|---|---|---|---|---|"]
    if "train" in n:
        t = n["train"]
        chance = f", chance {t['chance']:.3f}" if t.get("chance") is not None else ""
        lines.append(f"| 02 train ({t['loss']}, {t['epochs']} epochs, {t['seconds']} s) | epoch {t['chosen_epoch']} "
                     f"(val {t['val_mAP@10']:.3f}) | **{t['mAP@10']:.3f}** ({t['low']:.3f}–{t['high']:.3f}){chance}; "
                     f"R@1 {t['R@1']:.3f}, R@10 {t['R@10']:.3f}; a2t mAP@10 {t['a2t_mAP@10']:.3f} | chance | — |")
    if "ablation" in n:
        a = n["ablation"]
        row = next(r for r in a["rows"] if r["loss"] == a["chosen"])
        base = next((r for r in a["rows"] if r["loss"] == a["baseline"]), None)
        vs = "— (it is the baseline)" if a["chosen"] == a["baseline"] else f"{a['baseline']} {base['test']:.3f}"
        lines.append(f"| 04 loss ablation ({a['losses']} losses × {a['seeds']} seeds, {a['epochs']} epochs) | "
                     f"{a['chosen']} (val {row['val']:.3f}) | **{row['test']:.3f}** ({row['low']:.3f}–{row['high']:.3f}) "
                     f"| {vs} | {_p(row['p'])} |")
    if "ensemble" in n:
        e = n["ensemble"]
        lines.append(f"| 05 ensemble ({e['systems']} systems) | {e['chosen']} (val {e['val']:.3f}) | "
                     f"**{e['test']:.3f}** ({e['low']:.3f}–{e['high']:.3f}) | best single by validation, "
                     f"{e['best_single']}: {e['best_single_test']:.3f} ({e['diff']:+.3f}) | {_p(e['p'])} |")
    if "ablation" in n:
        a = n["ablation"]
        lines += ["", f"Loss ablation, ordered by validation mAP@10 (p: paired permutation test against "
                      f"{a['baseline']} on test):", "",
                  "| loss | val mAP@10 | test mAP@10 (95 % CI) | vs " + a["baseline"] + " | p |", "|---|---|---|---|---|"]
        for r in a["rows"]:
            diff = "—" if r["diff"] is None else f"{r['diff']:+.3f}"
            name = f"**{r['loss']}** (chosen)" if r["loss"] == a["chosen"] else r["loss"]
            lines.append(f"| {name} | {r['val']:.3f} | {r['test']:.3f} ({r['low']:.3f}–{r['high']:.3f}) | {diff} | {_p(r['p'])} |")
    return "\n".join(lines) + "\n"


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
    a = ap.parse_args(argv)
    if not a.run_dir and not a.from_record:
        ap.error("give a run folder or --from-record FILE")
    numbers = _read(Path(a.from_record)) if a.from_record else extract(a.run_dir)
    block = render(numbers)
    if a.record:
        Path(a.record).write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    if a.write:
        p = Path(a.write)
        p.write_text(replace_between_markers(p.read_text(encoding="utf-8"), block), encoding="utf-8")
    else:
        sys.stdout.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
