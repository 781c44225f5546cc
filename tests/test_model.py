"""The shipped default model: offline loading, tokenizer, accuracy as stated, stats matching the weights."""

import subprocess
import time
import sys

import pytest
import torch

from brain import corpus
from brain.science import evaluate
from brain.encoder import NoteText, melody_text, vocabulary
from brain.models import MODELS_DIR, load_model
from brain.neuron_stats import NeuronStats, fingerprint
from tests.conftest import DEFAULT_MODEL, ROOT, run_cli


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
    assert r.stdout.split() == [str(DEFAULT_MODEL["n_layers"]), str(DEFAULT_MODEL["d_mlp"])]


def test_check_card_recomputes_every_number_and_fails_on_a_wrong_one():
    from brain.science.check_card import check, compare

    measured, mismatches = check()
    assert mismatches == []
    card = load_model("notes-default", "cpu").card
    tampered = {"data": card["data"], "window": card["window"], "test": card["test"]}
    import copy

    tampered = copy.deepcopy(tampered)
    tampered["test"]["copy + 5-gram"]["accuracy"] += 0.002
    tampered["data"]["test"]["dedup"]["transpositions"] += 1
    found = compare(tampered, measured)
    assert len(found) == 2 and any("copy + 5-gram.accuracy" in m for m in found)


def test_card_shows_the_model_against_four_baselines_on_a_deduplicated_split(model):
    test, data = model.card["test"], model.card["data"]
    assert set(test) == {"model", "unigram", "bigram", "5-gram", "copy + 5-gram"}
    order = ["unigram", "bigram", "5-gram", "copy + 5-gram", "model"]  # each stronger than the last
    assert [test[k]["accuracy"] for k in order] == sorted(test[k]["accuracy"] for k in order)
    assert len({test[k]["targets"] for k in order}) == 1  # the same tokens
    dedup = data["test"]["dedup"]
    assert dedup["kept"] == data["test"]["tunes"] < dedup["test_tunes"]
    assert model.card["window"] == model.n_ctx == model.card["model"]["n_ctx"]
    readme = (MODELS_DIR / "notes-default" / "README.md").read_text()
    assert "copy + 5-gram" in readme and "interpolated 5-gram" in readme and "check_card" in readme


def test_the_fingerprint_sees_through_transposition():
    a = "| C4 E4 G4 | r C5"
    assert evaluate.fingerprint(a) == evaluate.fingerprint("| D4 F#4 A4 | r D5")
    assert evaluate.fingerprint(a) != evaluate.fingerprint("| C4 E4 A4 | r C5")
    tunes = [{"split": "train", "text": a}, {"split": "test", "text": a}, {"split": "test", "text": "| D4 F#4 A4 | r D5"},
             {"split": "test", "text": "C4 D4 E4"}, {"split": "test", "text": "G4 A4 B4"}, {"split": "test", "text": "E4 G4"}]
    kept, counts = evaluate.dedup_test(tunes)
    assert [t["text"] for t in kept] == ["C4 D4 E4", "E4 G4"]
    assert counts == {"test_tunes": 5, "exact_duplicates": 1, "transpositions": 1, "repeated_within_test": 1, "kept": 2}


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


def test_statistics_read_in_runs_that_fit_memory_match_one_run(model, monkeypatch):
    """A wide model's activations are captured a few texts at a time (gpt2-small's shape held 14.7 GB per 100k
    tokens at once): the exact top quantiles and every neuron's strongest examples come out as from one run."""
    from brain import neuron_stats

    texts = [t["text"] for t in corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
             if t["split"] == "validation"][:40]
    whole = neuron_stats.compute_stats(model, texts, progress=False, min_tokens=8000)
    per_token = 4 * model.n_layers * model.d_mlp
    monkeypatch.setattr(neuron_stats, "MEMORY_BUDGET", per_token * 900)  # a few texts per run
    assert len(neuron_stats.text_chunks(model, texts, [len(model.tokenizer.encode(t)[0]) for t in texts])) > 3
    runs = neuron_stats.compute_stats(model, texts, progress=False, min_tokens=8000)
    assert torch.equal(whole.quantiles[..., 2:], runs.quantiles[..., 2:])  # the exact top-K part
    same = sum(whole.top_examples[k] == runs.top_examples[k] for k in whole.top_examples)
    assert same >= 0.99 * len(whole.top_examples)  # ties among equal activations may swap
    assert runs.calibration_tokens == whole.calibration_tokens


def test_model_info_command():
    from tests.conftest import run_cli

    r = run_cli("model", "info", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "notes-default" in r.stdout and "copy + 5-gram" in r.stdout and "held-out precision" in r.stdout \
        and "→" in r.stdout


def test_a_hub_model_that_is_not_cached_is_told_at_once_without_retries(tmp_path):
    """`--model gpt2` offline: no network tries, no "Retrying" lines, the fix named (`hf download`)."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": ""}
    t = time.monotonic()
    r = run_cli("model", "info", "--model", "gpt2", "--short", env=env)
    took = time.monotonic() - t
    assert r.returncode == 2 and "hf download gpt2" in r.stderr and str(tmp_path / "hf") in r.stderr, r.stderr
    assert "Retrying" not in r.stderr + r.stdout and "huggingface.co" not in r.stderr
    assert took < 10  # 1.7 s on the 2-core machine; a network try took 36 s


def test_an_unknown_name_gets_a_suggestion_before_torch_loads():
    r = run_cli("model", "info", "--model", "solu-11")
    assert r.returncode == 2 and "Did you mean 'solu-1l'" in r.stderr


def test_the_alias_table_read_as_data_is_transformer_lens_own():
    from transformer_lens.supported_models import _model_alias_map

    from brain.model_names import legacy_aliases

    assert legacy_aliases() == _model_alias_map()
