"""``python -m atrlib evaluate``: score a retriever or a trained run on a dataset split and
write ``sim_<split>.npz`` (the :mod:`atrlib.simfile` format) and ``metrics.json``."""
from __future__ import annotations

import argparse
from pathlib import Path

from atrlib.scoring import score_split, split_metrics
from atrlib.search import resolve_retriever


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tagbridge", help="registered retriever or trained run directory")
    p.add_argument("--dataset", default="synth", help="registered dataset")
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--size", default="demo", help="synth only")
    p.add_argument("--out", required=True, help="folder for sim_<split>.npz and metrics.json")


def main(args) -> int:
    from atrlib.data import load_dataset
    from atrlib.files import write_metrics
    from atrlib.simfile import save_similarity

    ds = load_dataset(args.dataset, root=args.root, split=args.split, size=args.size)
    sm = score_split(resolve_retriever(args.model), ds, system=str(args.model))
    out = Path(args.out)
    save_similarity(out / f"sim_{ds.split}.npz", sm)
    both = split_metrics(sm, ds)
    write_metrics(out, both,
                  params={k: v for k, v in vars(args).items() if not k.startswith("_")}, key_metrics=["t2a/mAP@10", "t2a/R@1", "a2t/mAP@10"])
    print(f"{args.model} on {ds.name}/{ds.split}: t2a mAP@10 {both['t2a']['mAP@10']:.4f}, "
          f"R@1 {both['t2a']['R@1']:.4f}; a2t mAP@10 {both['a2t']['mAP@10']:.4f} -> {out}")
    return 0
