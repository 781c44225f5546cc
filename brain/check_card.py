"""Check the shipped default model against its card: full test split, within 0.5 points.

    python -m brain.check_card        (the test suite checks a subset quickly)
"""

from __future__ import annotations

import sys

from brain import corpus, evaluate
from brain.models import MODELS_DIR, load_model


def check(limit: int | None = None, tolerance_pp: float = 0.5) -> tuple[float, float, bool]:
    model = load_model("notes-default", "cpu")
    tunes = corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    measured = evaluate.evaluate_split(model, tunes, "test", limit=limit)["accuracy"] * 100
    stated = model.card["test"]["model"]["accuracy"] * 100
    return measured, stated, abs(measured - stated) <= tolerance_pp


if __name__ == "__main__":
    measured, stated, ok = check()
    print(f"test top-1: measured {measured:.2f}%, card says {stated:.2f}%: {'OK' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)
