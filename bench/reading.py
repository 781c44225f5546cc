"""Is the model read on its own distribution? The demo tune's live text, raw and as written, against the corpus.

    python bench/reading.py

The demo tune (Soldier's Joy, played at four notes a beat, with the sim pet on its pads) is synthesized as a jam and
read by the brain two ways: the rig's events written raw (every note-on a word, the rig's 4-beat bar), and as
``brain/corpus_style.py`` writes them. For each: words per bar (the tune's corpus rendering,
ryansMammoth/SoldiersJoy, is the target, ±20 %), and how often the 20 neurons that pass the sonifier's gate most
often pass it, against their rate on 600 held-out corpus tunes (median and largest ratio). The baseline for that
ratio is the tune's own corpus text read the same way: a repeated tune's most active neurons fire above their
average even on-distribution.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from common import machine, table

from brain import corpus
from brain.activations import capture_activations
from brain.models import MODELS_DIR, load_model
from brain.neuron_stats import load_stats
from brain.stream import read_session, session_events, stream_event
from recording import open_session
from recording.synthetic import melody_from_midi, write_melody_session

GATE = 0.8
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    print(f"machine: {machine()}")
    model = load_model("notes-default", "cpu")
    stats = load_stats(model, "")
    tunes = corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    test = [t for t in tunes if t["split"] == "test"][:600]
    cap = capture_activations(model, [t["text"] for t in test])
    calib = (torch.stack([cap.acts[lay] for lay in cap.layers], 1) / stats.scale >= GATE).float().mean(0).flatten()

    def rates(acts: torch.Tensor) -> tuple[float, float]:
        rate = (acts / stats.scale >= GATE).float().mean(0).flatten()
        top = rate.topk(20)
        ratio = top.values / calib[top.indices].clamp_min(1e-5)
        return float(ratio.median()), float(ratio.max())

    def per_bar(words: list[str]) -> float:
        return len(words) / max(1, words.count("|"))

    own = next(t for t in tunes if t["id"] == "ryansMammoth/SoldiersJoy#0")
    c = capture_activations(model, [own["text"]])
    own_rates = rates(torch.stack([c.acts[lay] for lay in c.layers], 1))
    rows = [["corpus rendering (ryansMammoth/SoldiersJoy)", f"{per_bar(own['text'].split()):.1f}", "–",
             f"{own_rates[0]:.1f}× / {own_rates[1]:.0f}×"]]
    src = write_melody_session(Path(tempfile.mkdtemp()) / "demo", melody_from_midi(
        ROOT / "configs" / "melodies" / "soldiers-joy.mid"), pet_every_beats=3, seed=1)
    log = open_session(src).log
    raw = [e for e in map(stream_event, log.rig_side()) if e is not None]
    target = per_bar(own["text"].split())
    for name, events in (("live, raw", raw), ("live, as written (corpus style)", session_events(log))):
        res = read_session(model, events, context_tokens=128, stats=stats)
        words = " ".join(r.text for r in res).split()
        med, top = rates(torch.stack([r.acts for r in res if r.acts is not None]))
        rows.append([name, f"{per_bar(words):.1f}", f"{per_bar(words) / target - 1:+.0%}", f"{med:.1f}× / {top:.0f}×"])
    table("the demo tune as the model reads it", ["text", "words per bar", "vs corpus rendering",
                                                  "top-20 neurons' gate rate ÷ held-out rate (median / max)"], rows)
    labels_shown(model, src)


def labels_shown(model, src: Path) -> None:
    """The demo replayed through the brain core: of the labels it shows (every hit's, as the stage and the terminal
    show them), how many are clear, and of those how many were true at their event; and of the sounding hits."""
    from brain.live.replay import replay
    from neurojam.config import load_config

    root = Path(tempfile.mkdtemp())
    out = open_session(replay(src, load_config(None, [f"session.dir={root}"]), speed=None, out=root / "r",
                              progress=False, model=model))
    gate = out.meta.config["brain"]["sonify"]["gate"]
    rows = []
    for name, keep in (("all hits shown (top 4 per event)", lambda h: True),
                       ("hits at or above the gate (sounding)", lambda h: h.normalized >= gate)):
        hits = [h for m in out.jam.neurons for h in m.hits if keep(h)]
        clear = [h for h in hits if h.label.endswith(("· true now", "· not now"))]
        true = sum(h.label.endswith("· true now") for h in clear)
        rows.append([name, str(len(hits)), f"{len(clear)} ({len(clear) / max(1, len(hits)):.0%})",
                     f"{true / max(1, len(clear)):.0%}"])
    table("labels shown during the demo", ["hits", "count", "with a clear label", "clear labels true at their event"],
          rows)


if __name__ == "__main__":
    main()
