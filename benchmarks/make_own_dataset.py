"""Write ``benchmarks/data/source_sentiment``: a 6-class folder in the layout a user brings (``train.csv.gz``,
``test.csv.gz``, ``info.json``), for the check that the main job runs with its defaults on own data of any class count:

    python benchmarks/make_own_dataset.py        # needs ../shared/datasets; the folder is committed
    python benchmarks/continual.py --name own 'task_sequence.tasks=[{name: source_sentiment, path: benchmarks/data/source_sentiment}, ag_news]'

The classes are (source, polarity) for three sources of English sentiment text: IMDB reviews, Rotten Tomatoes
sentences and SST-2 phrases, none of them AG News (the task that follows it). Train and test rows come from each
source's training split, disjoint, 300 and 100 per class; texts are cut to 600 characters (the encoder reads
64 tokens).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"imdb": "IMDB review", "rotten_tomatoes": "Rotten Tomatoes sentence", "sst2": "SST-2 phrase"}
POLARITIES = ("negative", "positive")  # label 0 and 1 of every source


def build(shared: Path, out: Path, train_per_class: int = 300, test_per_class: int = 100, seed: int = 0) -> None:
    splits: dict[str, list[pd.DataFrame]] = {"train": [], "test": []}
    labels = []
    for source, description in SOURCES.items():
        rows = pd.read_csv(shared / source / "train.csv.gz")
        rows = rows[rows["text"].str.split().str.len() >= 4].drop_duplicates("text")  # no one-word SST-2 phrases
        for polarity, name in enumerate(POLARITIES):
            picked = rows[rows["label"] == polarity].sample(train_per_class + test_per_class, random_state=seed)
            picked = picked.assign(text=picked["text"].str.slice(0, 600), label=len(labels))
            splits["train"].append(picked.iloc[:train_per_class])
            splits["test"].append(picked.iloc[train_per_class:])
            labels.append(f"{name} {description}")
    out.mkdir(parents=True, exist_ok=True)
    for split, parts in splits.items():
        frame = pd.concat(parts).sample(frac=1.0, random_state=seed)[["text", "label"]]
        frame.to_csv(out / f"{split}.csv.gz", index=False)
    info = {"labels": labels, "source": "built by benchmarks/make_own_dataset.py from ../shared/datasets "
            "(IMDB: Maas et al. 2011; Rotten Tomatoes: Pang & Lee 2005; SST-2: Socher et al. 2013)"}
    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "source_sentiment")
    args = parser.parse_args()
    build(args.shared, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
