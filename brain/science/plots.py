"""The experiments as pictures: one PNG per result, written where ``--plot`` says (``neurojam neuron ...``).

Each takes the result the command already printed, so the picture and the table never disagree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brain.science.experiments import AblationResult, Attribution, HypothesisResult, NeuronMatch

BRAIN, GREY, UP, DOWN = "#b54a9d", "#9a9a9a", "#1a7f37", "#b42318"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ablation(r: AblationResult, path: str | Path) -> Path:
    """Δ loss per next note: which notes the model predicts worse (red) or better (green) without the neuron."""
    rows = r.most_affected[:20]
    fig, ax = _figure(7, 0.3 * max(4, len(rows)) + 1.2)
    y = np.arange(len(rows))
    changes = [c for _, c, _ in rows]
    ax.barh(y, changes, color=[DOWN if c > 0 else UP for c in changes])
    ax.set_yticks(y, [f"{w}  (×{n})" for w, _, n in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.set_xlabel("mean change in next-note loss (nats; > 0: predicted worse without it)")
    ax.set_title(f"{r.mode} ablation of {r.neuron}: loss {r.loss_before:.3f} → {r.loss_after:.3f} "
                 f"({r.delta:+.3f}) over {r.targets} notes", fontsize=10, loc="left")
    return _save(fig, path)


def attribution(rows: list[Attribution], target: str, event: int, path: str | Path) -> Path:
    """Gradient × activation per neuron for the next note at one event: which neurons pushed toward it."""
    fig, ax = _figure(7, 0.3 * max(4, len(rows)) + 1.2)
    y = np.arange(len(rows))
    scores = [a.score for a in rows]
    ax.barh(y, scores, color=[UP if s > 0 else DOWN for s in scores])
    ax.set_yticks(y, [f"{a.layer}.{a.index}" for a in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.set_xlabel(f"gradient × activation for {target!r} (> 0: pushes toward it)")
    ax.set_title(f"note event {event}: neurons behind the next note", fontsize=10, loc="left")
    return _save(fig, path)


def hypothesis(r: HypothesisResult, path: str | Path) -> Path:
    """The two distributions the test compares: each text's maximum activation, matching and not."""
    fig, ax = _figure(7, 3.2)
    values = r.match_values + r.nomatch_values
    bins = np.linspace(min(values), max(values), 25) if values else 10
    ax.hist(r.nomatch_values, bins=bins, color=GREY, alpha=0.8, label=f"no match (n={r.n_nomatch})")
    ax.hist(r.match_values, bins=bins, color=BRAIN, alpha=0.7, label=f"match (n={r.n_match})")
    ax.set_xlabel(f"neuron {r.neuron}: maximum activation per text")
    ax.set_ylabel("texts")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Cohen's d {r.cohens_d:.2f}, Mann-Whitney p {r.p_value:.2g}: {r.verdict.split(':')[0]}",
                 fontsize=10, loc="left")
    return _save(fig, path)


def matches(found: list[NeuronMatch], model_a: str, model_b: str, path: str | Path) -> Path:
    """How well each neuron of A is matched in B: the distribution of best-match correlations."""
    fig, ax = _figure(7, 3.2)
    r = np.array([m.r for m in found]) if found else np.zeros(0)
    ax.hist(r, bins=np.linspace(-1, 1, 41), color=BRAIN)
    ax.axvline(0.9, color="#333", linestyle=":", linewidth=1)
    share = float((r >= 0.9).mean()) if r.size else 0.0
    ax.set_xlabel(f"Pearson r of each {model_a} neuron with its best match in {model_b}")
    ax.set_ylabel("neurons")
    ax.set_title(f"{share:.0%} of {r.size} neurons have a match with r ≥ 0.9", fontsize=10, loc="left")
    return _save(fig, path)
