"""Controls that must sound different: does the band depend on the trained model?

A band can sound right while ignoring the model (key and chord come from the
human). So ``neurojam score SESSION --controls`` replays the session's events
through the brain core four times — the trained model as configured, then
three controls — and measures how far each control's accompaniment lands from
the trained one's (:func:`recording.score.band_distance`):

- **random weights**: a model of the same shape whose every weight tensor is a
  random permutation of the trained tensor's values (same sizes, same weight
  statistics, no learned structure), with its own calibration quantiles and
  its own voices;
- **shuffled voices**: the trained model, its neuron → voice map permuted within
  each layer (who fires is unchanged; what each neuron plays is not);
- **sounding neurons mean-ablated**: the trained model with every neuron that
  drove a note in the trained replay held at its mean activation.

With ``brain.units: features`` (``--units features``) the band plays dictionary features, so the controls do too:
the random-weight model plays **its own dictionary** (``dictionary-control/``, trained on that shuffled copy, with its
own feature statistics: a dictionary that fits its model, as the trained one fits the trained model), the shuffled
voices are the features', and the sounding features are taken out of their layer's activations (steered to 0).

The verdict: the music depends on the trained model when the random-weight
control shares at most :data:`MAX_JACCARD` of its per-slot pitch classes with
the trained band and its pitch-class mix is at least :data:`MIN_HIST` away.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.units import NeuronId

MAX_JACCARD = 0.15
MIN_HIST = 0.3
CALIBRATION_TUNES = 400
"""Held-out tunes the random-weight control is calibrated on (its quantiles; the trained model's ship with it)."""


@dataclass
class ControlRow:
    name: str
    distance: dict
    """:func:`recording.score.band_distance` of this control from the trained replay."""
    prediction_hits: float | None
    brain_notes: int


@dataclass
class ControlsResult:
    trained_notes: int
    trained_prediction_hits: float | None
    rows: list[ControlRow] = field(default_factory=list)

    @property
    def depends(self) -> str:
        """'yes', 'partly' or 'no': does the music depend on the trained model (the random-weight control)?"""
        row = next((r for r in self.rows if r.name == "random weights"), None)
        if row is None or row.distance.get("slot_jaccard") is None:
            return "not measured"
        near = row.distance["slot_jaccard"] <= MAX_JACCARD
        far = (row.distance.get("pitch_class_distance") or 0.0) >= MIN_HIST
        return "yes" if near and far else "partly" if near or far else "no"

    def as_dict(self) -> dict:
        return {"trained_notes": self.trained_notes, "trained_prediction_hits": self.trained_prediction_hits,
                "depends_on_the_model": self.depends,
                "controls": [{"name": r.name, **r.distance, "prediction_hits": r.prediction_hits,
                              "brain_notes": r.brain_notes} for r in self.rows]}


def random_weights(model, seed: int = 0):
    """``model``'s shape with each weight tensor's values permuted at random: no learned structure left."""
    twin = copy.copy(model)
    twin.bridge = copy.deepcopy(model.bridge)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in twin.bridge.parameters():
            flat = p.detach().reshape(-1)
            p.copy_(flat[torch.randperm(flat.numel(), generator=gen)].reshape(p.shape))
    twin.name, twin.directory = f"{model.name} (random weights, seed {seed})", None
    return twin


def held_out_texts(model, limit: int = CALIBRATION_TUNES) -> list[str]:
    """The shipped corpus's test tunes (never trained on), for calibrating a control model."""
    from brain import corpus
    from brain.models import MODELS_DIR

    path = (model.directory or MODELS_DIR / "notes-default") / "corpus.jsonl.gz"
    if not path.exists():
        return []
    return [t["text"] for t in corpus.load(path) if t["split"] == "test"][:limit]


def control_features(model, twin, seed: int):
    """The shuffled-weight ``twin``'s own dictionary (``dictionary-control/``, trained on it), calibrated on it: the
    control a feature band must sound unlike. A clear error when the shipped control does not match ``seed``."""
    from brain.units.features import CONTROL, dictionary_dir, load_features
    from core.errors import ConfigError

    folder = dictionary_dir(model, CONTROL)
    features = load_features(twin, folder)
    card = features.dictionary.card
    if not card.get("random_weights") or card.get("seed") != seed:
        raise ConfigError(f"{folder} is not the dictionary of this control (random weights, seed {seed}): train it with "
                          f"`python -m brain.training.dictionary --random-weights --seed {seed} --out {folder}`")
    return features


def neuron_means(model, texts: list[str]) -> torch.Tensor:
    """[n_layers, d_mlp] each neuron's mean activation over ``texts`` (what mean ablation holds it at)."""
    from brain.activations import capture_activations

    cap = capture_activations(model, texts)
    return torch.stack([cap.acts[layer].mean(0) for layer in cap.layers])


def run_controls(session: str | Path, config, *, model=None, progress: bool = False, seed: int = 0,
                 work: str | Path | None = None) -> ControlsResult:
    """Replay ``session`` through the trained model and the three controls; distances from the trained band."""
    from brain.live.replay import replay
    from brain.config import BrainConfig
    from brain.models import load_model
    from brain.neuron_stats import compute_quantiles
    from recording import open_session
    from brain.stream import session_text
    from recording.log import read_session
    from recording.score import band_distance, score_session

    work = Path(work or tempfile.mkdtemp(prefix="neurojam-controls-"))
    bc = config.brain
    model = model or load_model(bc.model, bc.device, bc.dtype)
    texts = held_out_texts(model) or [session_text(read_session(session)).text]

    def run(name: str, **kw) -> Path:
        if progress:
            print(f"replaying through {name} ...")
        return replay(session, config, speed=None, out=work / name.replace(" ", "-"), progress=progress, **kw)

    trained = open_session(run("the trained model", model=model))
    band = BrainConfig.of_session(trained.meta).sonify
    trained_score = score_session(trained, band)
    heard = sorted({nid for a in trained.jam.accomps for n in a.notes for nid in n.neurons if "." in nid})
    out = ControlsResult(trained_score.brain_notes, trained_score.prediction_hits)

    controls: list[tuple[str, dict]] = []
    twin = random_weights(model, seed)
    if bc.units == "features":  # the shuffled-weight model plays its own dictionary, with its own statistics
        controls.append(("random weights", {"model": twin, "features": control_features(model, twin, seed)}))
    else:
        controls.append(("random weights", {"model": twin, "stats": compute_quantiles(twin, texts)}))  # its own scale
    controls.append(("shuffled feature voices" if bc.units == "features" else "shuffled voices", {
        "model": model, "prepare": lambda core: setattr(core, "voices", core.voices.shuffled(seed))}))
    if bc.units == "features":
        controls.append(("sounding features ablated", {"model": model, "prepare": lambda core: [
            core.steering_all.__setitem__(NeuronId.parse(nid), 0.0) for nid in heard]}))
    else:
        means = neuron_means(model, texts)

        def ablate(core) -> None:
            for nid in heard:
                layer, n = NeuronId.parse(nid)
                core.ablated[(layer, n)] = float(means[layer, n])

        controls.append(("sounding neurons mean-ablated", {"model": model, "prepare": ablate}))
    for name, kw in controls:
        other = open_session(run(name, **kw))
        s = score_session(other, band)
        out.rows.append(ControlRow(name, band_distance(trained, other, band.prediction_channel), s.prediction_hits,
                                   s.brain_notes))
    return out
