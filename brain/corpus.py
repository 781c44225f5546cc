"""Real public-domain melodies from music21's bundled corpus, as note text.

``python -m brain.corpus`` parses the ABC collections that ship with music21
(Ryan's Mammoth Collection, O'Neill's 1850, the Essen folk songs, ...), turns
each tune's melody into text with the shared encoder (:func:`melody_text`)
and writes one tune per line to a gzip file. Parsing takes minutes, so the
result ships with the default model and training reads it from there.
The split is by tune, decided by a hash of the tune's id: deterministic and
independent of the order or number of tunes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from brain.encoder import melody_text

COLLECTIONS = ("ryansMammoth", "oneills1850", "essenFolksong", "airdsAirs", "miscFolk")


def split_of(tune_id: str) -> str:
    """80/10/10 train/validation/test by a stable hash of the tune id."""
    bucket = int(hashlib.sha1(tune_id.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def _score_bars(score) -> list[list[int | None]]:
    """The top voice of a score, bar by bar: a pitch per note, None per rest beat."""
    part = score.parts[0] if hasattr(score, "parts") and score.parts else score
    bars = []
    for measure in part.getElementsByClass("Measure"):
        bar: list[int | None] = []
        for el in measure.recurse().notesAndRests:
            if el.isRest:
                bar.extend([None] * max(1, min(4, round(el.quarterLength))))
            elif el.isChord:
                bar.append(max(p.midi for p in el.pitches))
            else:
                bar.append(el.pitch.midi)
        if bar:
            bars.append(bar)
    return bars


def _parse_file(path: str) -> list[dict]:
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception as exc:  # music21 raises many kinds on odd ABC
        print(f"skip {path}: {exc}", file=sys.stderr)
        return []
    scores = parsed.scores if isinstance(parsed, stream.Opus) else [parsed]
    out = []
    stem = Path(path).parent.name + "/" + Path(path).stem
    for i, score in enumerate(scores):
        try:
            bars = _score_bars(score)
        except Exception:
            continue
        n_notes = sum(1 for b in bars for n in b if n is not None)
        if n_notes < 8:
            continue
        tune_id = f"{stem}#{i}"
        out.append({"id": tune_id, "split": split_of(tune_id), "text": melody_text(bars)})
    return out


def build(out: Path, workers: int = 2, limit_files: int | None = None) -> dict:
    from music21 import corpus
    from tqdm import tqdm

    paths = [str(p) for p in corpus.getPaths(fileExtensions=["abc"]) if any(c in str(p) for c in COLLECTIONS)]
    paths.sort()
    if limit_files:
        paths = paths[:limit_files]
    tunes: list[dict] = []
    with ProcessPoolExecutor(workers) as pool:
        for batch in tqdm(pool.map(_parse_file, paths, chunksize=4), total=len(paths), desc="parsing ABC"):
            tunes.extend(batch)
    tunes.sort(key=lambda t: t["id"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as f:
        for t in tunes:
            f.write(json.dumps(t) + "\n")
    return counts(tunes)


def load(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def counts(tunes: list[dict]) -> dict:
    out: dict = {}
    for t in tunes:
        c = out.setdefault(t["split"], {"tunes": 0, "tokens": 0})
        c["tunes"] += 1
        c["tokens"] += len(t["text"].split())
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "models/notes-default/corpus.jsonl.gz")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit-files", type=int, default=None)
    args = ap.parse_args(argv)
    print(json.dumps(build(args.out, args.workers, args.limit_files), indent=1))


if __name__ == "__main__":
    main()
