"""The shipped default model: offline loading, tokenizer, accuracy as stated, stats matching the weights."""

import subprocess
import sys

import pytest

from brain import corpus, evaluate
from brain.encoder import NoteText, melody_text, vocabulary
from brain.models import MODELS_DIR, load_model
from brain.neuron_stats import NeuronStats, fingerprint
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def model():
    return load_model("notes-default", "cpu")


def test_every_word_the_encoder_can_emit_is_in_the_vocabulary(model):
    vocab = model.tokenizer.vocab()
    assert set(vocabulary()) <= set(vocab)
    t = NoteText()
    t.add_beat(True)
    for n in range(128):
        t.add_note(n, "pet")
        t.add_beat(n % 4 == 0)
    ids, _ = model.tokenizer.encode(t.text)
    assert model.tokenizer.backend.token_to_id("<unk>") not in ids


def test_tokenizer_round_trips_encoder_output(model):
    text = melody_text([[60, 62, None, 64], [67, 72], [None]])
    ids, offsets = model.tokenizer.encode(text)
    assert " ".join(model.tokenizer.token_str(i) for i in ids) == text
    assert [text[a:b] for a, b in offsets] == text.split()


def test_loads_offline_without_any_network(tmp_path):
    code = """
import socket
def refuse(*a, **k):
    raise OSError("network used")
socket.socket.connect = refuse
socket.create_connection = refuse
from brain.models import load_model
m = load_model("notes-default", "cpu")
print(m.n_layers, m.d_mlp)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["2", "512"]


def test_shipped_weights_reproduce_the_card_on_a_test_subset(model):
    card = model.card["test_subset"]
    tunes = corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    measured = evaluate.evaluate_split(model, tunes, "test", limit=card["tunes"])
    assert abs(measured["accuracy"] - card["accuracy"]) * 100 <= 0.5
    assert measured["targets"] == card["targets"]


def test_card_shows_model_beats_the_baselines(model):
    test = model.card["test"]
    assert test["model"]["accuracy"] > test["bigram"]["accuracy"] + 0.1
    assert test["model"]["perplexity"] < test["bigram"]["perplexity"]
    readme = (MODELS_DIR / "notes-default" / "README.md").read_text()
    assert "bigram" in readme and "unigram" in readme and "training_curve.png" in readme


def test_split_is_by_tune_and_deterministic():
    tunes = corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    assert all(corpus.split_of(t["id"]) == t["split"] for t in tunes[:2000])
    assert len({t["id"] for t in tunes}) == len(tunes)
    counts = evaluate.counts_by(tunes)
    assert counts["test"] > 1000 and counts["train"] > 8 * counts["test"] // 2


def test_quantiles_file_matches_the_model(model):
    stats = NeuronStats.load(MODELS_DIR / "notes-default")
    assert stats.quantiles.shape == (model.n_layers, model.d_mlp, 5)
    assert stats.model_fingerprint == fingerprint(model)
    assert (stats.quantiles[..., 1:] >= stats.quantiles[..., :-1]).all()  # quantiles ascend
    assert len(stats.labels) == model.n_layers * model.d_mlp


def test_model_info_command():
    from tests.conftest import run_cli

    r = run_cli("model", "info", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "notes-default" in r.stdout and "bigram" in r.stdout and "→" in r.stdout
