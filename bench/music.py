"""How the accompaniment sounds, on held-out tunes in all 12 keys, beside baselines.

    python bench/music.py [--quick] [--tunes N] [--units features]

Tunes from the default model's *test* split (never trained on, never used to tune the sonifier: that was
done on the demo's Soldier's Joy), rendered as even eighth notes at 112 BPM with a pet on the drum pads,
transposed to each of the 12 keys, replayed through the brain over the real bridge, and scored by
`recording/score.py` (`neurojam score`) with its baselines on the same sessions. A replay has no rig: its brain notes
are heard as the rig's arranger would play them (`recording/arrangement.py`), the brain's own choice counted beside. Plus a pet-only session.
Targets (issue 13): key fit ≥ 95 % in every key; harmony ≥ random in key + 15 points; response ρ ≥ 0.5;
silent within a beat after everyone stops; 0 restrikes / double onsets / stuck notes; stable voice ≥ 95 %;
ρ(velocity, activation) ≥ 0.8.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import machine, table

from brain.encoder import word_note
from brain.models import MODELS_DIR, load_model
from brain.live.replay import replay
from core.errors import SessionError
from neurojam.config import load_config
from recording import open_session
from core.units import KEY_TONICS
from brain.config import BrainConfig
from recording.score import score_session
from recording.synthetic import write_melody_session


def held_out_tunes(n: int, min_notes: int = 64, max_notes: int = 160) -> list[tuple[str, list]]:
    from brain import corpus

    out = []
    for tune in corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz"):
        if tune["split"] != "test":
            continue
        notes = [x for x in (word_note(w) for w in tune["text"].split()) if x is not None][:max_notes]
        if len(notes) >= min_notes:
            out.append((tune["id"], [(i * 0.5, 0.5, note) for i, note in enumerate(notes)]))
        if len(out) == n:
            break
    return out


UNITS = "neurons"
"""What the brain plays in every replay here (``--units``)."""


def settings(root: Path):
    return load_config(None, [f"session.dir={root}", f"brain.units={UNITS}"])


def run(tunes, transpositions, model, root: Path) -> dict[int, list]:
    config = settings(root)
    scores: dict[int, list] = {}
    for k, shift in enumerate(transpositions):
        for i, (tid, melody) in enumerate(tunes):
            src = write_melody_session(root / f"src-{shift}-{i}", melody, transpose=shift, pet_every_beats=3, seed=i)
            try:
                out = replay(src, config, speed=None, out=root / f"out-{shift}-{i}", progress=False, model=model)
            except SessionError as exc:
                print(f"{tid} {shift:+d}: {exc}")
                continue
            scores.setdefault(shift, []).append(score_session(sess := open_session(out), BrainConfig.of_session(sess.meta).sonify))
    return scores


def voices_per_neuron(session) -> tuple[float, int]:
    """Distinct neurons heard on each (channel, pitch) voice: the mean over voices, and the most on one."""
    from collections import defaultdict

    heard = defaultdict(set)
    for a in session.jam.accomps:
        for n in a.notes:
            for nid in n.neurons:
                if "." in nid:
                    heard[(n.channel, n.note)].add(nid)
    sizes = [len(v) for v in heard.values()]
    return (statistics.fmean(sizes), max(sizes)) if sizes else (0.0, 0)


def controls_table(model, root: Path) -> None:
    """The demo tune (Soldier's Joy, D) and two held-out tunes, each through the trained model and the controls."""
    from brain.science.controls import run_controls
    from recording.synthetic import melody_from_midi

    root_dir = Path(__file__).resolve().parents[1]
    cases = [("demo tune", melody_from_midi(root_dir / "configs" / "melodies" / "soldiers-joy.mid"))]
    cases += [(tid.split("/")[-1], melody) for tid, melody in held_out_tunes(2)]
    rows, heard = [], []
    config = settings(root)
    for name, melody in cases:
        src = write_melody_session(root / f"ctl-{name}", melody, pet_every_beats=3, seed=1)
        result = run_controls(src, config, model=model, work=root / f"ctl-{name}-runs")
        trained = open_session(root / f"ctl-{name}-runs" / "the-trained-model")
        mean_v, max_v = voices_per_neuron(trained)
        heard.append([name, *labels_heard(trained), *balance(trained)])
        for r in result.rows:
            d, e = r.distance, r.distance["all_voices"]
            rows.append([name, r.name, f"{d['slot_jaccard']:.2f}", f"{d['pitch_class_distance']:.2f}",
                         f"{d['onset_overlap']:.2f}",
                         f"{e['slot_jaccard']:.2f} / {e['pitch_class_distance']:.2f} / {e['onset_overlap']:.2f}",
                         f"{pct(r.prediction_hits)} / {pct(result.trained_prediction_hits)}",
                         result.depends if r.name == "random weights" else "", f"{mean_v:.1f} / {max_v}"])
    table("controls: distance of each control's band from the trained model's (same events)",
          ["tune", "control", "slot Jaccard (≤ 0.15)", "pitch-class distance (≥ 0.3)", "onset overlap",
           "every voice: Jaccard / distance / onsets (≤ 0.15 / ≥ 0.3 / ≤ 0.6)",
           "prediction hits control / trained", "depends on the model", "neurons per voice mean / max"], rows)
    table(f"the {TOP_HEARD} {UNITS} heard most (drove the most notes) in each trained replay: their labels",
          ["tune", "clearly labelled (reads)", "of those, shown true at their events ≥ 80 %", "earned does",
           "prediction voice's share of brain notes (≤ 50 %)", "brain notes ÷ human notes (0.5–1.5)"], heard)


def balance(session) -> list[str]:
    """How much of the band is the prediction voice, and how dense the band is beside the human."""
    struck = [n for a in session.jam.accomps for n in a.notes if not n.tie]
    pred = sum(n.neurons == ["prediction"] for n in struck)
    human = sum(1 for n in session.jam.notes if n.source == "human")
    return [pct(pred / len(struck)) if struck else "–", f"{len(struck) / human:.2f}" if human else "–"]


TOP_HEARD = 8


def labels_heard(session) -> list[str]:
    """Of the units that drove the most notes: how many carry a clear label, how many of those were shown true at
    ≥ 80 % of their events (the live label's "true now"), how many carry an earned *does* side (features)."""
    from collections import Counter

    from bridge.messages import Neurons

    drove = Counter(nid for a in session.jam.accomps for n in a.notes for nid in n.neurons if "." in nid)
    top = [nid for nid, _ in drove.most_common(TOP_HEARD)]
    shown: dict[str, list[bool]] = {nid: [] for nid in top}
    last_label: dict[str, str] = {}
    for r in session.log.records:
        if isinstance(r.msg, Neurons):
            for h in r.msg.hits:
                nid = f"{h.layer}.{h.index}"
                if nid in shown:
                    last_label[nid] = h.label
                    if h.label.endswith("true now") or h.label.endswith("not now"):
                        shown[nid].append(h.label.endswith("true now"))
    clear = [nid for nid in top if shown[nid]]
    true = [nid for nid in clear if sum(shown[nid]) >= 0.8 * len(shown[nid])]
    does = [nid for nid in top if "(does)" in last_label.get(nid, "")]
    return [f"{len(clear)} of {len(top)}", f"{len(true)} of {len(clear)}",
            f"{len(does)} of {len(top)}" if UNITS == "features" else "–"]


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def pct(x):
    return "–" if x is None else f"{x:.0%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 tunes, 4 keys")
    ap.add_argument("--tunes", type=int, default=4)
    ap.add_argument("--units", choices=("neurons", "features"), default="neurons",
                    help="what the brain plays: neurons, or the features of the model's dictionary")
    args = ap.parse_args()
    global UNITS
    UNITS = args.units
    print(f"machine: {machine()}; the brain plays {UNITS}")
    model = load_model("notes-default", "cpu")
    tunes = held_out_tunes(2 if args.quick else args.tunes)
    shifts = [-6, -2, 1, 4] if args.quick else list(range(-5, 7))
    root = Path(tempfile.mkdtemp())
    scores = run(tunes, shifts, model, root)
    rows = []
    for shift in shifts:
        s = scores[shift]
        base = [x.baselines for x in s]
        key = KEY_TONICS[(2 + shift) % 12]  # the tunes are mostly in D or G: the shift names the D-tune's key
        rows.append([f"{shift:+d} ({key})", pct(mean(x.key_fit for x in s)), pct(mean(x.harmony for x in s)),
                     pct(mean(b.get("random_in_key", {}).get("harmony") for b in base)),
                     pct(mean(b.get("shuffled_brain", {}).get("harmony") for b in base)),
                     pct(mean(b.get("oracle_last_beat_chord", {}).get("harmony") for b in base)),
                     f"{mean(x.clashes_per_min for x in s):.1f} ({mean(x.clashes_asked_per_min for x in s):.0f}) / "
                     f"{mean(b.get('random_in_key', {}).get('clashes_per_min') for b in base):.0f}",
                     f"{mean(x.response_rho for x in s):.2f}", f"{max(x.beats_after_stop or 0 for x in s):.1f}",
                     pct(mean(x.stable_voices for x in s)), f"{mean(x.velocity_rho for x in s):.2f}",
                     f"{sum(x.restrikes for x in s)}/{sum(x.double_onsets for x in s)}/{sum(x.stuck for x in s)}/"
                     f"{sum(x.off_grid for x in s)}/{sum(x.short_notes for x in s)}",
                     f"{pct(mean(x.prediction_hits for x in s))} / "
                     f"{pct(mean(b.get('repeat_last_human_note', {}).get('prediction_hits') for b in base))}",
                     f"{min(x.brain_notes / x.human_notes for x in s):.2f}–{max(x.brain_notes / x.human_notes for x in s):.2f}",
                     f"{pct(mean(x.crowded for x in s))} ({pct(mean(x.crowded_asked for x in s))})"])
    table(f"accompaniment on {len(tunes)} held-out tunes × {len(shifts)} keys (+ pet on the drum pads)",
          ["shift (key)", "key fit", "harmony", "random in key", "shuffled", "oracle", "clashes/min: brain (asked) / random",
           "response ρ", "beats after stop (max)", "stable voice", "ρ(vel, act)", "restrike/double/stuck/off-grid/<20 ms",
           "prediction / repeat-last", "band ÷ human (0.5–1.5)", "crowding the human: heard (asked)"], rows)
    all_scores = [x for s in scores.values() for x in s]
    worst = min(shifts, key=lambda sh: mean(x.key_fit for x in scores[sh]))
    print(f"overall: key fit {pct(mean(x.key_fit for x in all_scores))} (worst key {worst:+d}: "
          f"{pct(mean(x.key_fit for x in scores[worst]))}), harmony {mean(x.harmony for x in all_scores):.1%} vs "
          f"random in key {mean(x.baselines['random_in_key']['harmony'] for x in all_scores):.1%} and the oracle "
          f"{mean(x.baselines['oracle_last_beat_chord']['harmony'] for x in all_scores):.1%}; brain notes ÷ "
          f"human notes {sum(x.brain_notes for x in all_scores) / sum(x.human_notes for x in all_scores):.2f} "
          f"({min(x.brain_notes / x.human_notes for x in all_scores):.2f}–"
          f"{max(x.brain_notes / x.human_notes for x in all_scores):.2f} by rendering)")

    controls_table(model, root)

    pet_only = write_melody_session(root / "pet-only", [], pet_every_beats=1.0, pet_beats=32, seed=3)
    out = replay(pet_only, settings(root), speed=None, out=root / "pet-out",
                 progress=False, model=model)
    s = score_session(sess := open_session(out), BrainConfig.of_session(sess.meta).sonify)
    print(f"pet only (8 bars of drum pads, then 2 bars of silence): {s.brain_notes} brain notes, response ρ "
          f"{s.response_rho}, beats played after the pet stopped {s.beats_after_stop}; "
          f"restrikes/double/stuck/off-grid {s.restrikes}/{s.double_onsets}/{s.stuck}/{s.off_grid}; "
          f"{'; '.join(s.notes) or ''}")


if __name__ == "__main__":
    main()
