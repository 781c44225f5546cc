"""``neurojam report SESSION``: one self-contained HTML page about a recorded jam.

Sections: a piano roll (pet, human, brain lanes; beat grid; treats), a heatmap
of the top neurons over the session's events, a card per top neuron
(label, max-activating windows in this session and in the calibration corpus
shaded Neuroscope-style, direct logit effect, how often it drove the
accompaniment), the band's score and the pet's stats. Three steps, each one
thing: :func:`analyse` reads the session into a :class:`ReportData`, the plots
turn data into PNG data URIs (the file opens offline), and
``templates/report.html.j2`` lays it out.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brain.config import BrainConfig
from bridge.grid import ON_BEAT_S
from core.errors import SessionError
from core.units import NeuronId, note_name
from recording import Session, open_session
from recording.jam import Jam, trial_strip
from recording.log import SessionMeta, brain_session_of, read_meta

COLOURS = {"pet": "#e6a817", "human": "#2a9db5", "brain": "#b54a9d"}
TOP_NEURONS = 8
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Token:
    text: str
    value: float
    alpha: float
    """Background strength: the activation over the neuron's scale, clipped to 0..1 (Neuroscope style)."""


@dataclass
class NeuronCardData:
    id: str
    label: str
    session: list[list[Token]]
    corpus: list[list[Token]]
    up: list[str]
    down: list[str]
    drove: int
    peak: float
    expects: str = ""
    """Features: the *does* side of the label (what it makes the model expect, its held-out hit rate)."""


@dataclass
class Training:
    pet: str
    level: int
    level_name: str
    first_level: int
    strip: str


@dataclass
class ReportData:
    title: str
    duration_s: float
    model: str
    counts: dict
    cards: list[NeuronCardData]
    model_line: str
    pet: dict
    training: Training | None
    piano_roll: str = ""
    heatmap: str = ""
    pet_plot: str = ""
    score_rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    score_keys: list[str] = field(default_factory=list)
    score_notes: list[str] = field(default_factory=list)
    score_error: str = ""
    score_chart: str = ""
    controls_rows: list[tuple[str, ...]] = field(default_factory=list)
    """The score's controls (``--controls``): name, slot Jaccard, pitch-class distance, onset overlap (the unit
    voices), the three over every voice, prediction hits, notes."""
    controls_verdict: str = ""
    on_beat_ms: int = round(ON_BEAT_S * 1000)
    unit: str = "neuron"
    """What the cards are: "neuron", or "feature" (of the model's sparse dictionary)."""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def piano_roll(jam: Jam) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = jam.beats[0].time if jam.beats else jam.start
    fig, axes = plt.subplots(3, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"hspace": 0.08})
    for ax, source in zip(axes, ("pet", "human", "brain")):
        notes = [n for n in jam.notes if n.source == source]
        for n in notes:
            ax.broken_barh([(n.start - t0, max(0.04, n.end - n.start))], (n.note - 0.4, 0.8), color=COLOURS[source],
                           alpha=0.35 + 0.65 * n.velocity / 127)
        if notes:
            lo, hi = min(n.note for n in notes), max(n.note for n in notes)
            ax.set_ylim(lo - 2, hi + 2)
            step = 12 if hi - lo > 14 else 4
            ticks = [n for n in range(lo - 2, hi + 3) if n % step == 0]
            ax.set_yticks(ticks, [note_name(n) for n in ticks], fontsize=8)
        ax.set_ylabel(source, fontsize=9)
        for b in jam.beats:
            ax.axvline(b.time - t0, color="#000", alpha=0.18 if b.beat == 0 else 0.05, linewidth=1)
        for tr in jam.treats:
            if tr.action == "dispensed":
                ax.axvline(tr.time - t0, color="#2ca02c", linewidth=2, alpha=0.8)
            elif source == "pet":
                ax.axvline(tr.time - t0, color="#d62728", linewidth=1, linestyle=":", alpha=0.8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_title("piano roll — bars as grey lines, treats: green = dispensed, red dotted = refused", fontsize=10,
                      loc="left")
    axes[-1].set_xlabel("seconds from the first beat")
    return _png(fig)


def heatmap(matrix: np.ndarray, neuron_ids: list[str], labels: dict, event_words: list[str]) -> str:
    """Neurons × events. The colour tops out at the 98th percentile of what is shown (a single peak would turn the
    rest black) and at least at 1.0, the calibration top, so values above it read as saturated."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 0.6 * len(neuron_ids) + 1.4))
    top = max(1.0, float(np.nanpercentile(matrix, 98))) if matrix.size else 1.0
    im = ax.imshow(matrix, aspect="auto", cmap="magma", vmin=0, vmax=top)
    ax.set_yticks(range(len(neuron_ids)))
    ax.set_yticklabels([textwrap.shorten(f"{n}  {labels.get(n, '')}", 70, placeholder="…") for n in neuron_ids],
                       fontsize=8)
    step = max(1, len(event_words) // 40)
    ax.set_xticks(range(0, len(event_words), step))
    ax.set_xticklabels(event_words[::step], fontsize=7, rotation=90)
    ax.set_xlabel("session events (note words, rests, bar lines) in order")
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label=f"normalized activation (colour capped at {top:.2f})")
    return _png(fig)


def pet_plots(jam: Jam) -> tuple[str, dict]:
    import matplotlib.pyplot as plt

    stats: dict = {"presses": len(jam.pad_presses), "on_beat_rate": jam.on_beat_rate(),
                   "treats_dispensed": sum(t.action == "dispensed" for t in jam.treats),
                   "treats_refused": sum(t.action == "refused" for t in jam.treats)}
    per_bar: dict[int, list[bool]] = {}
    for t in jam.pad_presses:
        grid = jam.grid_at(t)
        if grid is None:
            continue
        per_bar.setdefault(grid.bar_of(t), []).append(grid.on_beat(t))
    human_ends = []  # a phrase ends where the human pauses for at least a beat
    hs = sorted((n for n in jam.notes if n.source == "human"), key=lambda n: n.start)
    for a, b in zip(hs, hs[1:]):
        grid = jam.grid_at(a.end)
        if grid is not None and b.start - a.end >= grid.period:
            human_ends.append(a.end)
    delays = []
    for end in human_ends:
        after = [t - end for t in jam.pad_presses if 0 <= t - end <= 4]
        if after:
            delays.append(min(after))
    stats["response_delay_s"] = float(np.median(delays)) if delays else None
    stats["phrases"] = len(human_ends)
    fig, ax = plt.subplots(figsize=(5.5, 2.6))
    bars = sorted(per_bar)
    ax.plot(bars, [np.mean(per_bar[b]) for b in bars], marker="o", color=COLOURS["pet"])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("bar")
    ax.set_ylabel("on-beat share")
    ax.set_title(f"the pet's on-beat rate, bar by bar (±{ON_BEAT_S * 1000:.0f} ms)", fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig), stats



def shaded(tokens: list[str], acts: list[float], scale: float) -> list[Token]:
    return [Token(tok, a, max(0.0, min(1.0, a / scale)) if scale > 0 else 0.0) for tok, a in zip(tokens, acts)]


def build_report(session: str | Path, out: str | Path | None = None, model_name: str | None = None,
                 progress: bool = True, stats_dir: str | None = None, controls=None, units: str | None = None) -> Path:
    """Analyse, draw, render, write: the page's path. ``controls``: the settings to replay the session through the
    score's controls with (:mod:`brain.science.controls`; about 15 s for the default model), or None to leave them
    out. ``units``: neurons or features (default: what the session's brain played)."""
    data = analyse(Path(session), model_name=model_name, progress=progress, stats_dir=stats_dir, units=units)
    if controls is not None:
        from brain.science.controls import run_controls

        result = run_controls(session, controls)
        data.controls_verdict = result.depends
        keys = ("slot_jaccard", "pitch_class_distance", "onset_overlap")
        data.controls_rows = [(r.name, *(_cell(r.distance[k]) for k in keys),
                               " / ".join(_cell(r.distance["all_voices"][k]) for k in keys),
                               _cell(r.prediction_hits, pct=True), str(r.brain_notes)) for r in result.rows]
    out = Path(out) if out else Path(session) / "report.html"
    out.write_text(render(data))
    return out


def _cell(x, pct: bool = False) -> str:
    return "–" if x is None else f"{x:.0%}" if pct else f"{x:.2f}"


def render(data: ReportData) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=False)
    return env.get_template("report.html.j2").render(r=data, css=(TEMPLATES / "report.css").read_text())


def recorded_brain(session: Session) -> tuple[str, BrainConfig]:
    """The model and brain settings a session was played with: a demo's brain session beside it says best, then the
    session's own meta, then the defaults."""
    beside = brain_session_of(session.path)
    metas: list[SessionMeta] = [read_meta(beside)] if beside else []
    metas.append(session.meta)
    model = next((m.model for m in metas if m.model), "")
    config = next((BrainConfig.of_session(m) for m in metas if m.section("brain")), BrainConfig())
    return model or config.model, config


def analyse(session: Path, *, model_name: str | None = None, progress: bool = True,
            stats_dir: str | None = None, units: str | None = None) -> ReportData:
    from brain.logit_effect import direct_logit_effect
    from brain.models import load_model
    from brain.neuron_stats import load_stats
    from brain.stream import read_session, session_events

    opened = open_session(session, warn=progress)
    log, jam = opened.log, opened.jam
    recorded_model, config = recorded_brain(opened)
    model = load_model(model_name or log.meta.model or recorded_model, "cpu")
    features = None
    if (units or config.units) == "features":
        from brain.units.features import load_features

        features = load_features(model)
        stats = features.stats
    else:
        stats = load_stats(model, stats_dir or config.stats_dir)
    dictionary = features.dictionary if features else None
    labels = stats.labels if stats else {}
    events = session_events(log)
    if not events:
        raise SessionError(f"{session}: no notes or beats to analyse.")
    # read as the brain heard it: the same stream and windows as live (a long session is cut the same way)
    results = read_session(model, events, context_tokens=config.context_tokens, stats=stats, dictionary=dictionary)
    raw = np.stack([r.acts.reshape(-1).numpy() for r in results])  # [events, L*d]
    scale = stats.scale.numpy().reshape(-1) if stats is not None else np.abs(raw).max(0) + 1e-6
    per_event = raw / scale
    words = [r.text for r in results]
    width = dictionary.n_latents if dictionary else model.d_mlp
    drove = Counter(nid for a in jam.accomps for n in a.notes for nid in n.neurons) \
        if config.units == ("features" if features else "neurons") else Counter()  # another kind's ids name others
    top = heard_neurons(drove, per_event, width)
    ids = [str(NeuronId(int(i) // width, int(i) % width)) for i in top]

    hidden = _hidden_tokens(model)
    cards = []
    for col, nid in zip(top, ids):
        layer, n = NeuronId.parse(nid)
        series = raw[:, col]
        session_ex = [shaded(words[max(0, i - 10):i + 1], series[max(0, i - 10):i + 1].tolist(), float(scale[col]))
                      for i in np.argsort(-series)[:3]]
        corpus_ex = [shaded(e["tokens"], e["acts"], float(scale[col]))
                     for e in (stats.top_examples.get(nid, []) if stats else [])]
        effect = direct_logit_effect(model, layer, n) if dictionary is None else \
            dictionary[layer].W_dec[n] @ direct_logit_effect(model, layer)
        effect[hidden] = float("nan")
        up = [model.tokenizer.token_str(int(i)) for i in effect.nan_to_num(-1e9).topk(5).indices]
        down = [model.tokenizer.token_str(int(i)) for i in (-effect).nan_to_num(-1e9).topk(5).indices]
        expects, label = "", labels.get(nid, "")
        if features is not None:
            from brain.units.features import expects_line

            expects, label = expects_line(features, nid), features.reads(nid)
        cards.append(NeuronCardData(nid, label, session_ex, corpus_ex, up, down, drove.get(nid, 0),
                                    float(per_event[:, col].max()), expects))
    pet_png, pet = pet_plots(jam)
    training = None
    if jam.trials:
        last = jam.trials[-1]
        training = Training(last.pet, last.level_after, last.level_name, jam.trials[0].level, trial_strip(jam.trials))
    data = ReportData(title=str(Path(*session.resolve().parts[-2:])), duration_s=jam.duration, model=model.name,
                      counts=dict(jam.count_by_source()), cards=cards, pet=pet,
                      model_line=_model_line(model, stats, features), unit="feature" if features else "neuron",
                      training=training, piano_roll=piano_roll(jam), heatmap=heatmap(per_event[:, top].T, ids, labels,
                                                                                       words), pet_plot=pet_png)
    _add_score(data, opened, config)
    return data


def heard_neurons(drove: Counter, per_event: np.ndarray, d_mlp: int, k: int = TOP_NEURONS) -> np.ndarray:
    """The neurons the audience heard: those that drove the most accompaniment notes; the session's strongest
    (by their 99th-percentile activation, not a single peak) fill the rest."""
    heard = [NeuronId.parse(nid) for nid, _ in drove.most_common() if "." in nid][:k]
    cols = [layer * d_mlp + n for layer, n in heard if layer * d_mlp + n < per_event.shape[1]]
    strength = np.percentile(per_event, 99, axis=0) if len(per_event) else np.zeros(per_event.shape[1])
    rest = [int(i) for i in np.argsort(-strength) if int(i) not in cols]
    return np.array((cols + rest)[:k])


def score_chart(score) -> str:
    """The share figures beside their baselines, as bars: the brain, and the baseline it must beat."""
    import matplotlib.pyplot as plt

    from recording.score import BASELINE_NAMES

    rows = [("key fit", score.key_fit, "random_in_key", "key_fit"), ("harmony", score.harmony, "random_in_key", "harmony"),
            ("prediction", score.prediction_hits, "repeat_last_human_note", "prediction_hits")]
    rows = [(name, v, score.baselines.get(b, {}).get(k), BASELINE_NAMES[b]) for name, v, b, k in rows if v is not None]
    fig, ax = plt.subplots(figsize=(7, 0.7 * max(1, len(rows)) + 0.9))
    y = np.arange(len(rows))
    ax.barh(y + 0.18, [100 * v for _, v, _, _ in rows], 0.34, color=COLOURS["brain"], label="the brain")
    ax.barh(y - 0.18, [100 * (b or 0) for _, _, b, _ in rows], 0.34, color="#9a9a9a", label="its baseline")
    ax.set_yticks(y, [f"{name}\n(baseline: {base})" for name, _, _, base in rows], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _add_score(data: ReportData, session: Session, config: BrainConfig) -> None:
    """The accompaniment's score (``neurojam score``), or why it could not be measured."""
    from recording.score import score_rows, score_session

    try:
        score = score_session(session, config.sonify)
    except ModuleNotFoundError as exc:
        data.score_error = str(exc)
        return
    data.score_rows, data.score_keys, data.score_notes = list(score_rows(score)), list(score.keys), list(score.notes)
    data.score_chart = score_chart(score)


def _model_line(model, stats, features=None) -> str:
    """What the model and its labels are worth, from its card: beside the baselines, on held-out tunes."""
    test = (model.card or {}).get("test", {})
    parts = []
    if "model" in test and "copy + 5-gram" in test:
        parts.append(f"{model.name} predicts the next note of held-out tunes {test['model']['accuracy']:.1%} "
                     f"top-1 (copy + 5-gram {test['copy + 5-gram']['accuracy']:.1%}, 5-gram "
                     f"{test['5-gram']['accuracy']:.1%}, bigram {test['bigram']['accuracy']:.1%}).")
    if features is not None:
        from brain.units.features import summary_line

        parts.append("Labels on both sides: what is true where the feature fires (its precision on held-out tunes), "
                     "and what it makes the model expect, with how often that came next held out against its base "
                     f"rate. {summary_line(features).capitalize()}.")
    elif stats is not None and stats.scores:
        clear = sum(s["clear"] for s in stats.scores.values())
        if any("held_out_precision" in s for s in stats.scores.values()):
            parts.append(f"Labels: what is true where the neuron sounds — the trait carried by most of the held-out "
                         f"tokens where it passes the sonifier's gate, with that share; {clear} of "
                         f"{len(stats.scores)} neurons have a clear one (≥ 80 % on validation and test tunes).")
        else:
            parts.append(f"Labels: the trait of the current token each neuron tells apart best, with its AUROC over "
                         f"the validation tunes; {clear} of {len(stats.scores)} neurons have a clear one "
                         f"(AUROC ≥ 0.75).")
    return " ".join(parts)


def _hidden_tokens(model) -> list[int]:
    """Tokens not worth showing as a logit effect: specials, and note words the model was barely trained on."""
    from brain.encoder import SPECIAL_TOKENS
    from brain.logit_effect import trained_note_ids

    vocab = model.tokenizer.vocab()
    hidden = [vocab[t] for t in SPECIAL_TOKENS if t in vocab]
    trained = trained_note_ids(model)
    hidden += [i for i in model.note_token_ids() if i not in trained]
    return hidden
