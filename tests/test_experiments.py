"""Activation patching, layer corruption and results as rows: checked on planted models, where the answer is known
by construction, and end to end through the CLI on recorded sessions."""

import json
import math

import pytest
import torch

from brain.corruption import LayerCorruption
from brain.science.corruption_effects import _reordered, corrupted_forward
from brain.encoder import note_word, vocabulary
from brain.science.evaluate import model_scores, note_id_set
from brain.models import build_tiny
from brain.science.patching import PatchInputs, aligned, patch
from core.errors import ModelError
from tests.conftest import run_cli
from tests.test_sessions import synthetic_session

NEURON = 5
TEXTS = ["| G4 A4 B4 C5 | D5 E5 D5 C5 | B4 A4 G4 r | E4 F#4 G4 A4 |",
         "| C4 E4 G4 C5 | B4 G4 D4 F4 | E4 C4 r r | G4 A4 B4 C5 | D5 |",
         "| D4 F#4 A4 D5 | C#5 A4 E4 G4 | F#4 D4 r D4 |"]


def planted_patch_model():
    """Two layers; layer 0 and every attention write nothing; neuron 1.5 alone reads whether the last word is G4 or
    A4 and writes C5-over-D5 into the logits. The clean input ends with G4, the corrupted one with A4."""
    model = build_tiny(vocabulary(), n_layers=2, d_model=32, d_mlp=16, seed=3)
    vocab = model.tokenizer.vocab()
    g4, a4, c5, d5 = (vocab[note_word(n)] for n in (67, 69, 72, 74))
    e = torch.eye(32)
    sd = model.bridge.state_dict()
    with torch.no_grad():
        for name, w in sd.items():
            if name.endswith(("attn.o.weight", "attn.o.bias", "mlp.in.weight", "mlp.in.bias", "mlp.out.weight",
                              "mlp.out.bias", "pos_embed.weight", "unembed.weight", "unembed.bias")):
                w.zero_()
        sd["embed.weight"].zero_()
        sd["embed.weight"][:] = 0.01 * (e[5] - e[6])  # every other word: the same small vector
        sd["embed.weight"][g4] = e[0] - e[1]
        sd["embed.weight"][a4] = e[1] - e[0]  # same norm: the final LayerNorm scales both runs alike
        sd["blocks.1.mlp.in.weight"][NEURON] = 5 * (e[0] - e[1])
        sd["blocks.1.mlp.out.weight"][:, NEURON] = e[2] - e[3]
        sd["unembed.weight"][c5] = e[2]
        sd["unembed.weight"][d5] = e[3]
    bos = model.tokenizer.bos_id
    body = [vocab[w] for w in "| E4 F4 E4 D4 |".split()]
    return model, PatchInputs([bos, *body, g4], [bos, *body, a4], c5, d5)


def test_patching_the_one_neuron_that_carries_the_difference_restores_it_and_no_other_neuron_does():
    model, inputs = planted_patch_model()
    r = patch(model, inputs, neuron_layer=1)
    assert r.clean_diff > 1 and abs(r.corrupt_diff) < 1e-6  # the planted difference exists
    restored = {n: v for n, v, _ in r.neurons}
    assert restored[NEURON] >= 0.95
    assert all(abs(v) <= 0.05 for n, v in restored.items() if n != NEURON)
    assert r.neurons[0][0] == NEURON
    # the residual stream into the last layer, patched everywhere, is the clean run from there on
    assert r.all_positions["resid_pre"][1] == pytest.approx(1.0, abs=1e-5)
    assert r.all_positions["mlp_out"][1] == pytest.approx(1.0, abs=1e-5)
    assert abs(r.all_positions["attn_out"][1]) < 1e-5  # attention writes nothing here
    # only the last position differs: patching any earlier position does nothing
    assert abs(r.by_position["resid_pre"][1, :-1]).max() < 1e-5


def test_patching_the_full_residual_stream_at_the_last_layer_restores_exactly_one_on_a_random_model():
    model = build_tiny(vocabulary(), n_layers=3, d_model=32, d_mlp=32, seed=11)
    clean, corrupt = TEXTS[0], TEXTS[0].replace("D5 E5 D5", "F5 G5 F5").replace("E4 F#4 G4 A4", "E4 F#4 G4 F4")
    try:
        inputs = aligned(model, clean, corrupt)
    except ModelError:  # this random model predicts the same note for both: ask for another target
        inputs = aligned(model, clean, corrupt, target="C4")
    r = patch(model, inputs, neuron_layer=2, top_k=8, positions=[len(inputs.clean) - 1])
    assert r.all_positions["resid_pre"][2] == pytest.approx(1.0, abs=1e-5)
    assert r.all_positions["resid_pre"][0] == pytest.approx(1.0, abs=1e-5)
    assert len(r.neurons) == 8


def test_patching_refuses_inputs_that_predict_the_same_note():
    model, _ = planted_patch_model()
    with pytest.raises(ModelError, match="both predict"):
        aligned(model, TEXTS[0], TEXTS[0])


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(vocabulary(), n_layers=3, d_model=32, d_mlp=32, seed=2)


def _loss(model, forward=None):
    return math.log(model_scores(model, TEXTS, note_id_set(model), forward=forward)["perplexity"])


def test_no_corruption_and_the_identity_permutation_reproduce_the_models_loss(tiny):
    base = _loss(tiny)
    identity = LayerCorruption.parse(["permute=0,1,2"], tiny.n_layers)
    assert identity.is_identity
    assert _loss(tiny, corrupted_forward(tiny, identity)) == pytest.approx(base, abs=1e-6)
    # the reordering forward itself (the TL-native one), asked to run the identity order
    assert _loss(tiny, _reordered(tiny, identity, None)) == pytest.approx(base, abs=1e-6)
    swapped = LayerCorruption.parse(["permute=0,2,1"], tiny.n_layers)
    assert abs(_loss(tiny, corrupted_forward(tiny, swapped)) - base) > 1e-3


@pytest.mark.parametrize("specs", [["skip=1"], ["zero-mlp=2"], ["zero-attn=0", "skip=2"], ["mean-mlp=1"]])
def test_hook_corruption_and_the_native_forward_agree(tiny, specs):
    """Two implementations of one plan: TransformerLens hooks on the bridge, and the TL-native forward."""
    from brain.corruption import layer_output_means

    plan = LayerCorruption.parse(specs, tiny.n_layers)
    means = layer_output_means(tiny, TEXTS) if plan.needs_means else None
    x = torch.tensor([[tiny.tokenizer.bos_id, *tiny.tokenizer.encode(TEXTS[1])[0]]])
    hooked = corrupted_forward(tiny, plan, means)(x)
    native = _reordered(tiny, plan, means)(x)
    clean = tiny.bridge(x)
    assert (hooked - native).abs().max() < 1e-4
    assert (hooked - clean).abs().max() > 1e-3  # and the corruption changed something


def test_repeat_runs_a_layer_twice(tiny):
    plan = LayerCorruption.parse(["repeat=1"], tiny.n_layers)
    assert plan.order == (0, 1, 1, 2) and plan.reorders
    x = torch.tensor([[tiny.tokenizer.bos_id, *tiny.tokenizer.encode(TEXTS[0])[0]]])
    assert (corrupted_forward(tiny, plan)(x) - tiny.bridge(x)).abs().max() > 1e-3


@pytest.mark.parametrize("spec,message", [("skip=9", "out of range"), ("permute=0,0,1", "exactly once"),
                                          ("melt=1", "unknown operation"), ("skip", "OP=LAYER"),
                                          ("skip=two", "not a layer number")])
def test_bad_corruptions_say_what_to_write(spec, message):
    with pytest.raises(ModelError, match=message):
        LayerCorruption.parse([spec], 4)


def test_reordering_a_hub_style_model_is_refused_with_the_reason(tiny):
    from brain.corruption import CorruptionHooks

    with pytest.raises(ModelError, match="order of layers"):
        CorruptionHooks(tiny, LayerCorruption.parse(["permute=2,1,0"], 3))


def test_results_rows_concatenate_across_runs(tmp_path):
    import pyarrow.parquet as pq

    from brain.science.results import COLUMNS, ResultRows

    out = tmp_path / "r.parquet"
    for run in range(2):
        rows = ResultRows("ablate", "tiny", session="s", settings={"run": run})
        rows.add("loss_change", 0.5 + run, layer=1, neuron=3)
        rows.write(out)
    table = pq.read_table(out)
    assert table.column_names == list(COLUMNS) and table.num_rows == 2
    assert table.column("value").to_pylist() == [0.5, 1.5]
    (tmp_path / "junk.parquet").write_text("not parquet")
    from core.errors import SessionError

    with pytest.raises(SessionError, match="not a results table"):
        ResultRows("x", "m").write(tmp_path / "junk.parquet")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return synthetic_session(tmp_path_factory.mktemp("exp") / "s", bars=24, seed=4)


def test_neuron_patch_on_a_session_writes_json_a_heatmap_and_rows(session, tmp_path):
    out, png = tmp_path / "rows.parquet", tmp_path / "p.png"
    r = run_cli("neuron", "patch", str(session), "--event", "-1", "--transpose", "3", "--layer", "2",
                "--json", "--plot", str(png), "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout[r.stdout.index("{"):])
    assert data["clean_target"] != data["corrupt_target"]
    assert data["neuron_layer"] == 2 and len(data["neurons"]) == 512
    assert set(data["by_position"]) == {"resid_pre", "attn_out", "mlp_out"}
    assert data["all_positions"]["resid_pre"][0] == pytest.approx(1.0, abs=1e-4)
    assert png.stat().st_size > 10_000
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert {row["experiment"] for row in table} == {"patch"}
    assert sum(row["site"] == "mlp.hook_post" and row["metric"] == "restored" for row in table) == 512


def test_every_experiment_writes_rows(session, tmp_path):
    out = tmp_path / "all.parquet"
    assert run_cli("neuron", "ablate", "1.3", str(session), "--out", str(out)).returncode == 0
    assert run_cli("neuron", "attribute", str(session), "--event", "5", "--out", str(out)).returncode == 0
    match, nomatch = tmp_path / "m.txt", tmp_path / "n.txt"
    match.write_text("\n".join(TEXTS))
    nomatch.write_text("\n".join(t.replace("|", "r") for t in TEXTS))
    r = run_cli("neuron", "test", "0.1", "--match", str(match), "--nomatch", str(nomatch), "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = run_cli("neuron", "match", "--a", "notes-default", "--b", "notes-default", "--corpus", str(match),
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert {row["experiment"] for row in table} == {"ablate", "attribute", "test", "match"}
    assert all(row["session"] == str(session) for row in table if row["experiment"] in ("ablate", "attribute"))
    matches = [row for row in table if row["experiment"] == "match"]
    assert len(matches) == 4 * 512  # every neuron of A, its best match in B
    assert sum(row["value"] > 0.99 for row in matches) > 0.9 * len(matches)  # a model matches itself


def test_model_corrupt_ranks_skips_against_the_clean_model_and_the_baselines(session, tmp_path):
    r = run_cli("model", "corrupt", "--each", "skip", "--test-limit", "40", "--session", str(session), "--json",
                timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    clean = data["clean"]["test"]["accuracy"]
    skips = {c["corruption"]: c for c in data["corruptions"]}
    assert set(skips) == {"skip=0", "skip=1", "skip=2", "skip=3"}
    assert skips["skip=0"]["test"]["accuracy"] < clean - 0.1  # the embedding layer's MLP carries the most
    assert all(c["session_loss"] != data["clean"]["session_loss"] for c in skips.values())
    assert all(c["continuation"] for c in skips.values())
    bad = run_cli("model", "corrupt", "--corrupt", "skip=7")
    assert bad.returncode == 2 and "out of range" in bad.stderr


def test_a_corrupt_replay_sounds_different_and_says_which_corruption_made_it(session, tmp_path):
    from recording import open_session

    clean, broken = tmp_path / "clean", tmp_path / "skip0"
    assert run_cli("replay", str(session), "--fast", "--out", str(clean), timeout=300).returncode == 0
    r = run_cli("replay", str(session), "--fast", "--corrupt", "skip=0", "--out", str(broken), timeout=300)
    assert r.returncode == 0, r.stderr
    meta = json.loads((broken / "meta.json").read_text())
    assert meta["corruption"] == "skip=0" and meta["config"]["brain"]["corrupt"] == ["skip=0"]
    assert json.loads((clean / "meta.json").read_text())["corruption"] == "none"

    def brain_notes(path):
        return [(n.note, round(n.start, 3)) for n in open_session(path).jam.notes if n.source == "brain"]

    assert brain_notes(clean) and brain_notes(broken) and brain_notes(clean) != brain_notes(broken)
    for path in (clean, broken):
        assert run_cli("export", str(path), "--midi", str(path / "jam.mid")).returncode == 0
    assert (clean / "jam.mid").read_bytes() != (broken / "jam.mid").read_bytes()


def test_skipping_a_layer_live_silences_its_neurons_until_clear(ports):
    """The stage's and `neurojam steer --skip-layer`'s control, on a real brain process over real sockets."""
    import time
    from collections import Counter

    from bridge.link import Link
    from bridge.messages import Hello, Neurons, Ping
    from tests.test_brain_node import collect, play, start_brain

    brain = start_brain(ports)
    sets = ["--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}"]
    rig = Link("rig", "rig", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1)

    def layers_heard(beats):
        play(rig, time.monotonic(), beats=beats)
        got = collect(rig, 10, until=lambda g: sum(isinstance(m, Neurons) for m in g) >= beats * 3 // 2)
        return Counter(h.layer for m in got if isinstance(m, Neurons) for h in m.hits)

    try:
        collect(rig, 3, until=lambda g: any(isinstance(m, (Hello, Ping)) for m in g))
        before = layers_heard(16)
        loudest = before.most_common(1)[0][0]
        ok = run_cli("steer", "--skip-layer", str(loudest), *sets)
        assert ok.returncode == 0 and f"skipped layer {loudest}" in ok.stdout, ok.stdout + ok.stderr
        collect(rig, 0.5)
        during = layers_heard(16)
        assert sum(during.values()) > 0 and during[loudest] == 0, (before, during)
        bad = run_cli("steer", "--skip-layer", "99", *sets)
        assert bad.returncode == 2 and "out of range" in bad.stderr
        assert run_cli("steer", "--clear", *sets).returncode == 0
        collect(rig, 0.5)
        after = layers_heard(16)
        assert after[loudest] > 0, after
    finally:
        rig.close()
        brain.terminate()
        brain.wait(timeout=15)


def test_the_stage_turns_a_skip_request_into_a_steer_message():
    from bridge.messages import Steer
    from stage.server import StageServer

    msg = StageServer._message("steer", {"skip_layer": 2, "rig": "rig"})
    assert msg == Steer(layer=2, skip_layer=True, rig="rig")
    for bad in ("2", True, -1, 10**40):
        with pytest.raises(ValueError):
            StageServer._message("steer", {"skip_layer": bad})


def test_each_experiment_draws_its_picture_beside_its_json(tmp_path):
    """ablate and attribute draw by default into the session; test and match when asked. The JSON stays clean."""
    from recording.synthetic import write_melody_session

    session = write_melody_session(tmp_path / "s", [(b * 0.5, 0.45, 62 + [0, 4, 7, 12][b % 4]) for b in range(24)],
                                   tempo_bpm=120)
    r = run_cli("neuron", "ablate", "1.42", str(session), "--json", timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["neuron"] == "1.42", r.stderr
    r = run_cli("neuron", "attribute", str(session), "--event", "5", "--json", timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["event"] == 5, r.stderr
    (tmp_path / "m.txt").write_text("D4 E4 F#4 G4 A4\nG4 A4 B4 C5 D5\nD4 F#4 A4 D5\n")
    (tmp_path / "n.txt").write_text("C4 D4 E4 F4 G4\nF4 G4 A4 A#4\nC4 E4 G4 C5\n")
    r = run_cli("neuron", "test", "1.42", "--match", str(tmp_path / "m.txt"), "--nomatch", str(tmp_path / "n.txt"),
                "--plot", str(tmp_path / "test.png"), "--json", timeout=300)
    assert r.returncode == 0 and len(json.loads(r.stdout)["match_values"]) == 3, r.stderr
    for png in (session / "ablate-1.42.png", session / "attribute-event5.png", tmp_path / "test.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, png
