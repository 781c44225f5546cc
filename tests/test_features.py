"""Features where neurons were (issue 44): the live brain, the stage, the report and the score's controls reading
the model's sparse dictionary instead of its neurons.

The planted test: a dictionary for the real notes-default whose feature 0 of layer 1 is one known direction (the
bar line's, measured from the model's own activations) and whose other features never fire. The brain must play
that feature at bar lines, label it "bar line" with the does side measured, and silence it when steered to 0."""

import contextlib
import json

import numpy as np
import pytest
import torch

from bridge.messages import Accomp, Beat, Neurons, Note, Steer
from brain.units.dictionary import Dictionary, LayerDictionary

LAYER = 1
LATENTS = 8
GATE = 0.5
"""The planted feature sounds (and is labelled) at half its calibration top: a bar line in a short window reaches
0.78-0.86 of the top over the training tunes, under the default gate (0.9)."""


@pytest.fixture(scope="module")
def model():
    from brain.models import load_model

    return load_model("notes-default", "cpu")


@pytest.fixture(scope="module")
def splits(model):
    from brain.science.evaluate import corpus_splits

    train, validation, test = corpus_splits(model)
    return train[:300], validation[:150], test[:150]


@pytest.fixture(scope="module")
def planted(model, splits):
    """(the planted FeatureSet, its direction): feature LAYER.0 reads the bar line's direction, nothing else fires."""
    from brain.activations import capture_activations
    from brain.neuron_stats import NeuronStats
    from brain.units.features import FeatureSet, feature_quantiles, silence_the_dead

    cap = capture_activations(model, splits[0][:150], layers=[LAYER])
    acts = cap.acts[LAYER]
    bar = model.tokenizer.vocab()["|"]
    is_bar = cap.token_ids == bar
    direction = torch.nn.functional.normalize(acts[is_bar].mean(0) - acts[~is_bar].mean(0), dim=0)
    proj = acts @ direction
    threshold = float((proj[is_bar].quantile(0.05) + proj[~is_bar].quantile(0.999)) / 2)
    assert proj[is_bar].quantile(0.05) > proj[~is_bar].quantile(0.999), "the bar line has no direction of its own"
    layers = {}
    for layer in range(model.n_layers):
        gen = torch.Generator().manual_seed(layer)
        w = torch.nn.functional.normalize(torch.randn(LATENTS, model.d_mlp, generator=gen), dim=1)
        b_enc = torch.full((LATENTS,), -1e4)  # silent
        if layer == LAYER:
            w[0] = direction
            b_enc[0] = -threshold
        layers[layer] = LayerDictionary(w.clone(), b_enc, w.clone(), torch.zeros(model.d_mlp), k=2)
    dictionary = Dictionary(layers, {"latents": LATENTS})
    quantiles, n = feature_quantiles(model, dictionary, splits[0])
    stats = NeuronStats(silence_the_dead(quantiles), "", {}, {}, {}, n)
    return FeatureSet(dictionary, stats), direction


def jam(bars: int = 6, start_beat: int = 0, node: str = "rig") -> list:
    """A rig's beats (120 BPM) and a human melody in eighth notes over them: a bar line every 4 beats."""
    msgs, seq = [], 0
    for b in range(start_beat, start_beat + 4 * bars):
        seq += 1
        msgs.append(Beat(index=b, bar=b // 4, beat=b % 4, time=b * 0.5, node=node, seq=seq))
        for half in (0, 1):  # eighth notes: the band answers while the human plays
            seq += 1
            msgs.append(Note(source="human", note=60 + [0, 4, 7, 12, 7, 4][(2 * b + half) % 6], velocity=80,
                             t=b * 0.5 + 0.25 * half + 0.02, node=node, seq=seq))
    return msgs


@contextlib.contextmanager
def core_with(model, features, *sets):
    """A brain core playing ``features``; closed after (its hooks off the shared model)."""
    from brain.live.core import BrainCore
    from neurojam.config import load_config

    core = BrainCore(load_config(None, ["brain.units=features", *sets]).brain, model, features=features)
    try:
        yield core
    finally:
        core.close()


def played(core, msgs) -> tuple[list[Neurons], list[Accomp]]:
    out = []
    for i in range(0, len(msgs), 3):
        out += [m for _, m in core.handle(msgs[i:i + 3])]
    return [m for m in out if isinstance(m, Neurons)], [m for m in out if isinstance(m, Accomp)]


@pytest.mark.parametrize("static", [True, False], ids=["static step", "eager step"])
def test_the_planted_feature_is_played_at_bar_lines_and_steering_it_to_zero_silences_it(model, planted, static):
    features, _ = planted
    with core_with(model, features, f"brain.static_step={str(static).lower()}", f"brain.sonify.gate={GATE}") as core:
        assert (core.static is not None) == static
        neurons, accomps = played(core, jam())
        assert neurons and all(n.units == "features" for n in neurons)
        fid = f"{LAYER}.0"
        at_bars = [n for n in neurons if n.text.split()[-1:] == ["|"]]
        others = [n for n in neurons if "|" not in n.text.split()]
        strength = [max((h.normalized for h in n.hits if f"{h.layer}.{h.index}" == fid), default=0.0) for n in at_bars]
        assert len(at_bars) >= 5 and sum(s > 0.5 for s in strength) >= 0.8 * len(at_bars), strength
        assert not any(f"{h.layer}.{h.index}" == fid and h.activation > 0 for n in others for h in n.hits)
        assert any(fid in note.neurons for a in accomps for note in a.notes), "the planted feature never drove a note"

        reply = core.steer(Steer(layer=LAYER, neuron=0, factor=0.0))
        assert reply.applied and reply.units == "features", reply
        neurons, accomps = played(core, jam(start_beat=24))
        assert not any(f"{h.layer}.{h.index}" == fid and h.activation > 1e-3 for n in neurons for h in n.hits)
        assert not any(fid in note.neurons for a in accomps for note in a.notes)
        # a neuron id out of the dictionary's range is refused with the range, not a traceback
        reply = core.steer(Steer(layer=LAYER, neuron=LATENTS, factor=0.0))
        assert not reply.applied and f"valid: 0..{LATENTS - 1}" in reply.reason


def test_the_planted_feature_is_labelled_bar_line_on_both_sides(model, planted, splits):
    from brain.units.labels import label_dictionary

    features, _ = planted
    _, validation, test = splits
    labels = label_dictionary(model, features.dictionary, features.stats.scale, GATE, validation, test)
    label = labels[f"{LAYER}.0"]
    assert label.reads.trait == "bar line" and label.reads.clear, label.text()
    assert label.firings >= 10 and 0 <= label.hits <= label.firings and label.expects, label.text()
    assert not labels[f"{LAYER}.1"].reads.trait  # a silent feature earns nothing


def test_a_feature_too_rare_to_label_stays_silent_unless_asked(model, planted):
    """The planted feature's labels say it never passed its gate often enough to label: the band leaves it out (its
    hits still reach the stage at 0); ``brain.play_rare_features`` lets it sound. Labelled, it sounds by default."""
    import dataclasses

    features, _ = planted
    fid = f"{LAYER}.0"
    for trait, rare_play, sounds in (("", "false", False), ("", "true", True), ("bar line", "false", True)):
        scores = {fid: {"trait": trait}, f"{LAYER}.1": {"trait": "rest"}}
        labelled = dataclasses.replace(features, stats=dataclasses.replace(features.stats, scores=scores))
        with core_with(model, labelled, f"brain.sonify.gate={GATE}", f"brain.play_rare_features={rare_play}") as core:
            _, accomps = played(core, jam())
        drove = any(fid in note.neurons for a in accomps for note in a.notes)
        assert drove == sounds, (trait, rare_play)
    assert torch.isfinite(features.stats.quantiles[LAYER, 0, -1])  # the shared statistics are left as they were


def test_switching_units_live_keeps_the_window_and_says_what_plays(model, planted):
    features, _ = planted
    with core_with(model, features) as core:
        played(core, jam(bars=2))
        before = core.rigs["rig"].stream.text.text
        reply = core.steer(Steer(play="neurons"))
        assert reply.applied and reply.units == "neurons" and core.units == "neurons"
        assert core.rigs["rig"].stream.text.text == before and core.rigs["rig"].stream.dictionary is None
        neurons, _ = played(core, jam(bars=1, start_beat=8))
        assert neurons and all(n.units == "neurons" for n in neurons)
        assert any(h.index >= LATENTS for n in neurons for h in n.hits)  # neuron ids, beyond the planted dictionary's
        reply = core.steer(Steer(layer=LAYER, neuron=0, factor=0.0, units="features"))
        assert not reply.applied and "plays neurons" in reply.reason
        assert core.steer(Steer(play="features")).applied and core.units == "features"
        neurons, _ = played(core, jam(bars=1, start_beat=12))
        assert all(n.units == "features" and all(h.index < LATENTS for h in n.hits) for n in neurons)


def test_the_shipped_dictionarys_near_duplicates_sing_in_one_voice(model):
    """Every near-duplicate pair of the shipped dictionary gets its group's home and pushes; other features keep
    their own (a distinct feature's voice is not overwritten)."""
    from brain.units.features import load_features
    from brain.voices import voices_of

    dictionary = load_features(model).dictionary
    voices = voices_of(model, [3, 4, 5, 6], dictionary)
    pairs = [(layer, i, j) for layer in dictionary.layers for i, j in dictionary[layer].near_duplicate_pairs().tolist()]
    assert pairs, "the shipped dictionary's card counts near-duplicates: the test needs one"
    for layer, i, j in pairs:
        assert voices.voice_id(layer, i) == voices.voice_id(layer, j)
        assert voices.home[layer, i] == voices.home[layer, j] and (voices.push[layer, i] == voices.push[layer, j]).all()
    alone = voices.representative == np.arange(voices.home.shape[1])[None, :]
    assert alone.mean() > 0.99 and len({int(h) for h in voices.home[alone]}) > 12


def test_a_brain_without_a_calibrated_dictionary_says_what_to_run(model, tmp_path):
    from brain.units.features import load_features
    from core.errors import ConfigError

    planted = Dictionary({layer: LayerDictionary(torch.zeros(4, model.d_mlp), torch.zeros(4), torch.zeros(4, model.d_mlp),
                                                 torch.zeros(model.d_mlp), 1) for layer in range(model.n_layers)})
    planted.save(tmp_path / "d")
    with pytest.raises(ConfigError, match="--calibrate"):  # a folder other than the model's own dictionary/
        load_features(model, tmp_path / "d")
    Dictionary({0: planted[0]}).save(tmp_path / "one-layer")
    with pytest.raises(ConfigError, match="not trained on notes-default"):
        load_features(model, tmp_path / "one-layer")


def test_the_shipped_features_play_in_a_demo_with_their_labels_on_the_report(tmp_path):
    """`neurojam demo --units features` end to end: the brain plays the shipped dictionary's features, the terminal
    and the recorded answers say so, and the report's cards show both sides of each label beside the control's."""
    from recording import open_session
    from recording.log import read_session
    from tests.conftest import run_cli

    r = run_cli("demo", "--units", "features", "--seconds", "8", "--no-view", "--out", str(tmp_path / "demo"),
                timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "top feature" in r.stdout, r.stdout
    brain = read_session(tmp_path / "demo" / "brain-session")
    hits = [r.msg for r in brain.records if isinstance(r.msg, Neurons)]
    assert hits and all(m.units == "features" for m in hits)
    jam_ = open_session(tmp_path / "demo" / "session").jam
    assert sum(len(a.notes) for a in jam_.accomps) > 10
    page = (tmp_path / "demo" / "report.html").read_text()
    assert "feature 0." in page or "feature 1." in page or "feature 2." in page or "feature 3." in page
    assert page.count('class="expects"') >= 6, "each card shows what its feature makes the model expect"
    assert "shuffled-weight model" in page and "do what they say held out" in page


def test_the_features_path_of_replay_ablate_and_model_stats_runs_from_the_command_line(tmp_path):
    """Each command a researcher would point at features: a replay that plays them, a feature ablated over a
    session, and the feature statistics of a user's own model folder (its dictionary beside it)."""
    import shutil

    from brain.models import MODELS_DIR
    from recording.log import read_session
    from recording.synthetic import write_melody_session
    from tests.conftest import run_cli, run_cli_each

    melody = [(b * 0.5, 0.45, 60 + [0, 4, 7, 12, 7, 4][b % 6]) for b in range(64)]
    src = write_melody_session(tmp_path / "src", melody, pet_every_beats=3, seed=1)
    mine = tmp_path / "my-model"
    shutil.copytree(MODELS_DIR / "notes-default", mine, ignore=shutil.ignore_patterns("dictionary-control"))
    (mine / "dictionary" / "feature_quantiles.safetensors").unlink()
    replayed, ablated, wrong, patched, no_stats = run_cli_each([  # side by side: each mostly loads
        ("replay", str(src), "--fast", "--units", "features", "--out", str(tmp_path / "replayed")),
        ("neuron", "ablate", "1.584", str(src), "--units", "features", "--json"),
        ("neuron", "ablate", "1.5000", str(src), "--units", "features"),
        ("neuron", "patch", str(src), "--units", "features", "--layer", "1", "--top-k", "12", "--json", "--plot",
         str(tmp_path / "patch.png")),
        ("demo", "--model", str(mine), "--units", "features", "--seconds", "1", "--no-view", "--out",
         str(tmp_path / "no-stats"))])
    assert replayed.returncode == 0, replayed.stderr
    played = [rec.msg for rec in read_session(tmp_path / "replayed").records if isinstance(rec.msg, Accomp)]
    ids = {nid for a in played for n in a.notes for nid in n.neurons if "." in nid}
    assert ids and max(int(i.split(".")[1]) for i in ids) >= 512, ids  # feature ids: beyond the 512 neurons a layer has
    assert ablated.returncode == 0 and '"loss_after"' in ablated.stdout, ablated.stderr
    assert wrong.returncode != 0 and "valid: 0..1023" in wrong.stdout + wrong.stderr and "Traceback" not in wrong.stderr
    assert patched.returncode == 0, patched.stderr
    rows = json.loads(patched.stdout)["neurons"]
    units = [int(row["neuron"].split(".")[1]) for row in rows]
    assert len(units) == 12 and max(units) < 1024 and any(abs(row["restored"]) > 1e-4 for row in rows)
    assert no_stats.returncode != 0
    assert f"neurojam model stats --model {mine} --units features" in no_stats.stdout + no_stats.stderr
    r = run_cli("model", "stats", "--model", str(mine), "--units", "features", "--tokens", "20000", timeout=180)
    assert r.returncode == 0, r.stderr
    assert (mine / "dictionary" / "feature_quantiles.safetensors").exists() and "calibration tokens" in r.stdout
