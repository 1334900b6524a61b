"""The README's study tables, regenerated (the embedded dataset on frozen demo towers; moments: real clips):

- ``objectives``: InfoNCE vs InfoNCE + A-CML + MLML and InfoNCE + A-CML (staged: started from the InfoNCE run), with
  and without top-16 re-ranking by the matching head (alone, or fused with the similarity by a
  weight chosen on validation);
- ``distillation``, ``listwise``, ``augmentation``: ensemble distillation, the listwise loss on
  soft caption relevance and caption augmentation, each under the 2024 protocol (mAP@10, one
  clip per caption) and the 2025 one (mAP@16 on a multi-relevance file built from the synth
  metadata: clips that share the query clip's background and event kinds).
- ``moments``: the held-out moment study (:mod:`atrlib.moments.heldout`) on recordings generated
  from a folder of real clips (default ``../shared/data/gcompris_sounds``): clips in disjoint
  train / validation / test groups, every choice on validation, the test recordings scored once;
  writes ``results.json`` and ``results.md`` (the README's moments table) into ``--out``.

    python scripts/studies.py all --out reports/studies                      # demo size (hours on 2 CPU cores)
    python scripts/studies.py moments --readme README.md                     # ~10 min on 2 CPU cores
    python scripts/studies.py objectives --out /tmp/st --size smoke --epochs 3  # a quick look

Every run folder is reused when it is already complete, so an interrupted run continues.
Prints Markdown tables; writes the CSVs next to the runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import atrlib  # noqa: F401  (thread settings before torch)


def _table(df) -> str:
    if "rerank_k" in df.columns:  # objectives: the system name already says loss and K
        df = df.drop(columns=["loss", "rerank_k", "seeds"])
    cols = list(df.columns)
    lines = ["| system | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, row in df.iterrows():
        cells = [("" if v != v else f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row.tolist()]
        lines.append(f"| {str(name).replace('|', '·')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=["objectives", "distillation", "listwise", "augmentation", "all", "moments"])
    ap.add_argument("--out", default="reports/studies", help="folder for every run and table")
    ap.add_argument("--size", default="demo", help="synth size: tiny / smoke / demo")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of every training run")
    ap.add_argument("--seeds", default="0,1", help="student seeds, comma-separated")
    ap.add_argument("--stage2", choices=("joint", "heads"), default="joint",
                    help="objectives: 'joint' trains everything in stage 2; 'heads' trains only the new heads on the "
                         "frozen stage-1 dual encoder (train_only='extra_heads'), into <out>/objectives-heads")
    ap.add_argument("--auxiliary", default="acml+mlml,acml", help="objectives: cross-modal terms added to InfoNCE, "
                                                                  "comma-separated (each a run)")
    ap.add_argument("--clips", default="", help="moments: the clip folder ('' = <shared>/data/gcompris_sounds)")
    ap.add_argument("--recordings", default="40,16,24", help="moments: recordings for train,validation,test")
    ap.add_argument("--readme", default="", help="moments: also put results.md between the README's "
                                                 "<!-- moments-study:begin/end --> markers in this file")
    args = ap.parse_args(argv)
    if args.study == "moments":
        return moments(args)

    from atrlib.data.synth import synth_metadata
    from atrlib.experiments.distillation import (augmentation_ablation, distillation_study, same_clip_paraphrases,
                                                 variant_ablation)
    from atrlib.retrieval.protocol2025 import synth_relevance_file
    from atrlib.data.splits import load_splits
    from atrlib.train.config import TrainConfig

    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = TrainConfig(size=args.size, epochs=args.epochs, progress=False, out_dir=str(out / "base"))
    data = load_splits(base)
    rel = synth_relevance_file(out / "relevance_2025.csv", data["test"], synth_metadata(split="test", size=args.size))
    todo = ["objectives", "distillation", "listwise", "augmentation"] if args.study == "all" else [args.study]

    if "objectives" in todo:
        from dataclasses import replace

        from atrlib.experiments.objective_ablation import objectives_ablation

        print("## Cross-modal objectives and re-ranking (2-layer MiniLM cross-attention head)\n")
        # staged: InfoNCE for 10 epochs, then InfoNCE + A-CML + MLML from it (lr 1e-4, 2x the epochs);
        # re-ranked by the head alone and by similarity + w x probability (w chosen on validation)
        cfg = replace(base, batch_size=32, lr=3e-4, epochs=min(args.epochs, 10),
                      loss_kwargs={"crossattn": {"text_model": "minilm", "num_layers": 2, "frame_stride": 20}})
        print(_table(objectives_ablation(cfg, contrastive=["infonce"], auxiliary=["", *args.auxiliary.split(",")],
                                         rerank_k=[0, 16], seeds=seeds[:1], progress=False, staged=True,
                                         out_dir=out / ("objectives" if args.stage2 == "joint" else "objectives-heads"),
                                         aux_overrides={"epochs": 2 * min(args.epochs, 10), "lr": 1e-4,
                                                        **({} if args.stage2 == "joint" else
                                                           {"train_only": "extra_heads", "select_on": "last"})})))
    if "distillation" in todo:
        print("\n## Ensemble distillation (3 teachers, equal weights)\n")
        print(_table(distillation_study(base, seeds=seeds, out_dir=out / "distillation", relevance_file=str(rel))))
    if "listwise" in todo:
        print("\n## Listwise loss (soft relevance from caption similarity)\n")
        print(_table(variant_ablation(base, {"infonce": {"loss": "infonce"}, "infonce+listwise": {"loss": "infonce+listwise"},
                                             "listwise": {"loss": "listwise"}}, seeds=seeds, out_dir=out / "listwise",
                                      relevance_file=str(rel))))
    if "augmentation" in todo:
        print("\n## Caption augmentation (paraphrases = the clip's other captions, a stand-in)\n")
        para = same_clip_paraphrases(data["train"], out / "paraphrases.json")
        print(_table(augmentation_ablation(base, str(para), prob=0.3, seeds=seeds, out_dir=out / "augmentation",
                                           relevance_file=str(rel))))
    return 0


def moments(args) -> int:
    from atrlib.moments.heldout import HeldoutConfig, run_study
    from atrlib.paths import shared_dir

    clips = args.clips or (str(shared_dir() / "data" / "gcompris_sounds") if shared_dir() else "")
    if not clips:
        raise SystemExit("no clip folder: pass --clips DIR (../shared is absent)")
    out = args.out if args.out != "reports/studies" else "reports/studies/moments"
    cfg = HeldoutConfig(root=clips, counts=tuple(int(n) for n in args.recordings.split(",")), out_dir=out)
    run_study(cfg, progress=True)
    table = (Path(out) / "results.md").read_text()
    print(table)
    if args.readme:
        begin, end = "<!-- moments-study:begin -->", "<!-- moments-study:end -->"
        readme = Path(args.readme)
        text = readme.read_text(encoding="utf-8")
        if begin not in text or end not in text:
            raise SystemExit(f"{readme}: no {begin} ... {end} markers to put the table between")
        head, rest = text.split(begin, 1)
        readme.write_text(f"{head}{begin}\n{table.strip()}\n{end}{rest.split(end, 1)[1]}", encoding="utf-8")
        print(f"wrote the table into {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
