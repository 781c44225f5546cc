"""``neurojam report SESSION``: one self-contained HTML page about a recorded jam.

Sections: a piano roll (pet, human, brain lanes; beat grid; treats), a heatmap
of the top neurons over the session's events, a card per top neuron
(label, max-activating windows in this session and in the calibration corpus
shaded Neuroscope-style, direct logit effect, how often it drove the
accompaniment), and the pet's stats. Plots are matplotlib PNGs embedded as
data URIs: the file opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path

import numpy as np

from brain.config import BrainConfig
from core.errors import SessionError
from recording import open_session
from recording.jam import Jam, trial_strip

COLOURS = {"pet": "#e6a817", "human": "#2a9db5", "brain": "#b54a9d"}
TOP_NEURONS = 8


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
        ax.set_ylabel(f"{source}\nMIDI note", fontsize=9)
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
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 0.45 * len(neuron_ids) + 1.4))
    im = ax.imshow(matrix, aspect="auto", cmap="magma", vmin=0, vmax=max(1.0, float(np.nanmax(matrix)) if matrix.size else 1))
    ax.set_yticks(range(len(neuron_ids)))
    ax.set_yticklabels([f"{n}  {labels.get(n, '')[:38]}" for n in neuron_ids], fontsize=8)
    step = max(1, len(event_words) // 40)
    ax.set_xticks(range(0, len(event_words), step))
    ax.set_xticklabels(event_words[::step], fontsize=7, rotation=90)
    ax.set_xlabel("session events (note words, rests, bar lines) in order")
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label="normalized activation")
    return _png(fig)


def pet_plots(jam: Jam) -> tuple[str, dict]:
    import matplotlib.pyplot as plt

    stats: dict = {"presses": len(jam.pad_presses), "on_beat_rate": jam.on_beat_rate(),
                   "treats_dispensed": sum(t.action == "dispensed" for t in jam.treats),
                   "treats_refused": sum(t.action == "refused" for t in jam.treats)}
    per_bar: dict[int, list[bool]] = {}
    tempo = jam.beats[0].tempo_bpm if jam.beats else 120
    for t in jam.pad_presses:
        b = jam.beat_at(t)
        if b is None:
            continue
        per_bar.setdefault(int(b // (jam.beats[0].beats_per_bar)), []).append(abs(b - round(b)) * 60 / tempo <= 0.12)
    human_ends = []  # a phrase ends where the human pauses for at least a beat
    hs = sorted((n for n in jam.notes if n.source == "human"), key=lambda n: n.start)
    for a, b in zip(hs, hs[1:]):
        if b.start - a.end >= 60 / tempo:
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
    ax.set_title("the pet's on-beat rate, bar by bar (±120 ms)", fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig), stats


def shaded(tokens: list[str], acts: list[float], scale: float) -> str:
    """Tokens with a background as strong as their activation (Neuroscope style)."""
    out = []
    for tok, a in zip(tokens, acts):
        alpha = max(0.0, min(1.0, a / scale)) if scale > 0 else 0
        out.append(f'<span class="tok" style="background: rgba(214,39,40,{alpha:.2f})" '
                   f'title="{a:.3f}">{html.escape(tok)}</span>')
    return " ".join(out)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 0; color: #222; background: #faf9f6; }
header { background: #2b2140; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; } header p { margin: 0; opacity: .8; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 32px 40px; }
section { background: #fff; border-radius: 10px; padding: 14px 20px; margin: 18px 0; box-shadow: 0 1px 3px #0001; }
h2 { font-size: 18px; margin: 4px 0 10px; } img { max-width: 100%; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px; }
.card { border: 1px solid #e5e2da; border-radius: 8px; padding: 10px 14px; }
.card h3 { margin: 0 0 2px; font-size: 16px; } .label { color: #6a4c93; margin-bottom: 6px; }
.tok { padding: 1px 3px; border-radius: 3px; font-family: ui-monospace, Menlo, monospace; font-size: 13px; }
.ex { margin: 3px 0; } .muted { color: #777; font-size: 13px; }
table.kv td { padding: 2px 12px 2px 0; } .up { color: #1a7f37; } .down { color: #b42318; }
.stats { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
"""


def build_report(session: str | Path, out: str | Path | None = None, model_name: str | None = None,
                 progress: bool = True, stats_dir: str | None = None) -> Path:
    from brain.models import load_model
    from brain.logit_effect import direct_logit_effect
    from brain.node import load_stats
    from brain.stream import read_session, session_events

    session = Path(session)
    opened = open_session(session, warn=progress)
    log, jam = opened.log, opened.jam
    config = BrainConfig()  # the default model and stats folder, when the session does not name them
    name = model_name or log.meta.get("model") or _brain_setting(session, "model") or config.model
    model = load_model(name, "cpu")
    stats = load_stats(model, stats_dir or config.stats_dir)
    labels = stats.labels if stats else {}
    events = session_events(log)
    if not events:
        raise SessionError(f"{session}: no notes or beats to analyse.")
    # read as the brain heard it: the same stream and windows as live (a long session is cut the same way)
    context = (_brain_setting(session, "config") or {}).get("brain", {}).get("context_tokens", config.context_tokens)
    results = read_session(model, events, context_tokens=context, stats=stats)
    raw = np.stack([r.acts.reshape(-1).numpy() for r in results])  # [events, L*d]
    scale = stats.scale.numpy().reshape(-1) if stats is not None else np.abs(raw).max(0) + 1e-6
    per_event = raw / scale
    top = np.argsort(-per_event.max(axis=0))[:TOP_NEURONS]
    ids = [f"{i // model.d_mlp}.{i % model.d_mlp}" for i in top]
    words = [r.text for r in results]
    drove = Counter(nid for a in jam.accomps for n in a.notes for nid in n.neurons)

    hidden = _hidden_tokens(model)
    cards = []
    for col, nid in zip(top, ids):
        layer, n = map(int, nid.split("."))
        series = raw[:, col]
        best = np.argsort(-series)[:3]
        session_ex = []
        for i in best:
            lo = max(0, i - 10)
            session_ex.append(shaded(words[lo:i + 1], series[lo:i + 1].tolist(), float(scale[col])))
        corpus_ex = [shaded(e["tokens"], e["acts"], float(scale[col])) for e in (stats.top_examples.get(nid, [])
                                                                               if stats else [])]
        effect = direct_logit_effect(model, layer, n)
        effect[hidden] = float("nan")
        up = [model.tokenizer.token_str(int(i)) for i in effect.nan_to_num(-1e9).topk(5).indices]
        down = [model.tokenizer.token_str(int(i)) for i in (-effect).nan_to_num(-1e9).topk(5).indices]
        cards.append(f"""<div class="card" id="neuron-{nid}"><h3>neuron {nid}</h3>
<div class="label">{html.escape(labels.get(nid, 'no label (run neurojam model stats)'))}</div>
<div class="muted">in this session (strongest three, up to 10 tokens of context):</div>
{''.join(f'<div class="ex">{e}</div>' for e in session_ex)}
<div class="muted">in the calibration corpus:</div>
{''.join(f'<div class="ex">{e}</div>' for e in corpus_ex) or '<div class="muted">–</div>'}
<table class="kv"><tr><td>direct logit effect</td><td class="up">▲ {' '.join(map(html.escape, up))}</td>
<td class="down">▼ {' '.join(map(html.escape, down))}</td></tr>
<tr><td>drove the accompaniment</td><td>{drove.get(nid, 0)} notes</td></tr>
<tr><td>peak normalized</td><td>{per_event[:, col].max():.2f}</td></tr></table></div>""")

    pet_png, pet = pet_plots(jam)
    counts = jam.count_by_source()
    title = str(Path(*session.resolve().parts[-2:]))
    rate = "–" if pet["on_beat_rate"] is None else f"{pet['on_beat_rate']:.0%}"
    score_html = score_section(opened)
    training = ""
    if jam.trials:
        last = jam.trials[-1]
        training = (f"<tr><td>training ({html.escape(last.pet)})</td><td>level {last.level_after} "
                    f"({html.escape(last.level_name)}), started at level {jam.trials[0].level}</td></tr>"
                    f"<tr><td>last 20 trials (● treat, ◉ success held back by the caps, ○ miss)</td>"
                    f"<td>{trial_strip(jam.trials)}</td></tr>")
    delay = "–" if pet["response_delay_s"] is None else f"{pet['response_delay_s']:.2f} s"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>neurojam report — {html.escape(title)}</title><style>{CSS}</style></head><body>
<header><h1>neurojam — what the model heard</h1>
<p>session {html.escape(title)} · {jam.duration:.0f} s · model {html.escape(model.name)} ·
{counts.get('pet', 0)} pet notes, {counts.get('human', 0)} human notes, {counts.get('brain', 0)} brain notes ·
{pet['treats_dispensed']} treats</p></header><main>
<section id="piano-roll"><h2>Piano roll</h2><img alt="piano roll" src="{piano_roll(jam)}"></section>
<section id="heatmap"><h2>Top {len(ids)} neurons over the session</h2>
<p class="muted">Each row is a neuron (activation ÷ its 1−1e-5 quantile over the calibration corpus); each column an
event of the note text the model read, read exactly as the live brain read it (the same windows; without any live
steering).</p><img alt="neuron heatmap" src="{heatmap(per_event[:, top].T, ids, labels, words)}"></section>
<section id="neuron-cards"><h2>Neurons</h2>{_model_line(model, stats)}<div class="cards">{''.join(cards)}</div></section>
{score_html}
<section id="pet-stats"><h2>The pet</h2><div class="stats"><img alt="on-beat rate" src="{pet_png}">
<table class="kv"><tr><td>pad presses</td><td>{pet['presses']}</td></tr>
<tr><td>on the beat (±120 ms)</td><td>{rate}</td></tr>
<tr><td>treats dispensed / refused</td><td>{pet['treats_dispensed']} / {pet['treats_refused']}</td></tr>
{training}
<tr><td>human phrases</td><td>{pet['phrases']}</td></tr>
<tr><td>response delay after a phrase (median)</td><td>{delay}</td></tr></table></div></section>
</main></body></html>"""
    out = Path(out) if out else session / "report.html"
    out.write_text(page)
    return out


def score_section(session) -> str:
    """The accompaniment's score (``neurojam score``) as a table, or why it could not be measured."""
    from recording.score import score_rows, score_session

    try:
        score = score_session(session)
    except ModuleNotFoundError as exc:
        return f'<section id="score"><h2>How the band sounded</h2><p class="muted">not scored: {exc}</p></section>'
    rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td>"
                   f"<td>{html.escape(d)}</td></tr>" for a, b, c, d in score_rows(score))
    notes = "".join(f'<p class="muted">{html.escape(n)}</p>' for n in score.notes)
    return (f'<section id="score"><h2>How the band sounded</h2><p class="muted">Beside baselines on this same '
            f'session (`neurojam score`); keys heard: {html.escape(", ".join(score.keys) or "–")}.</p>'
            f'<table class="kv"><tr><th>figure</th><th>the brain</th><th>baseline</th><th>target</th></tr>{rows}'
            f'</table>{notes}</section>')


def _model_line(model, stats) -> str:
    """What the model and its labels are worth, from its card: beside the baselines, on held-out tunes."""
    test = (model.card or {}).get("test", {})
    parts = []
    if "model" in test and "copy + 5-gram" in test:
        parts.append(f"{html.escape(model.name)} predicts the next note of held-out tunes {test['model']['accuracy']:.1%} "
                     f"top-1 (copy + 5-gram {test['copy + 5-gram']['accuracy']:.1%}, 5-gram "
                     f"{test['5-gram']['accuracy']:.1%}, bigram {test['bigram']['accuracy']:.1%}).")
    if stats is not None and stats.scores:
        clear = sum(s["clear"] for s in stats.scores.values())
        parts.append(f"Labels: the trait of the current token each neuron tells apart best, with its AUROC over the "
                     f"validation tunes; {clear} of {len(stats.scores)} neurons have a clear one (AUROC ≥ 0.75).")
    return f'<p class="muted">{" ".join(parts)}</p>' if parts else ""


def _hidden_tokens(model) -> list[int]:
    """Tokens not worth showing as a logit effect: specials, and note words the model was barely trained on."""
    from brain.encoder import SPECIAL_TOKENS
    from brain.logit_effect import trained_note_ids

    vocab = model.tokenizer.vocab()
    hidden = [vocab[t] for t in SPECIAL_TOKENS if t in vocab]
    trained = trained_note_ids(model)
    hidden += [i for i in model.note_token_ids() if i not in trained]
    return hidden


def _brain_setting(session: Path, key: str):
    """A demo keeps the brain's own session beside the rig's: its meta names the model and holds its config."""
    import json

    meta = session.parent / "brain-session" / "meta.json"
    if meta.exists():
        return json.loads(meta.read_text()).get(key)
    return None
