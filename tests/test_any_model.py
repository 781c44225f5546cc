"""Bring your own model (issue 37): Hugging Face architectures made here without a network, through the lab's
commands as a user types them. GPT-2 (byte-level BPE that splits note words, found by repo id in a Hugging Face
cache, as `hf download gpt2` leaves it) and LLaMA (a gated MLP, a model folder)."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ROOT, steer_a_running_brain_and_watch_its_stage
from tests.test_sessions import synthetic_session

GPT2 = "neurojam/gpt2-notes"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two small trained models (GPT-2 in a hub cache, LLaMA as a folder), a HOME of their own for statistics."""
    from brain.training.architectures import make, save_folder, save_to_hub_cache

    root = tmp_path_factory.mktemp("any-model")
    cache, home = root / "hub", root / "home"
    home.mkdir()
    model, tok, losses = make("gpt2", steps=100, progress=False)
    assert losses[-1] < losses[0] - 2  # it learned something of the tunes
    snapshot = save_to_hub_cache(model, tok, cache, GPT2)
    model, tok, _ = make("llama", steps=100, progress=False)
    llama = save_folder(model, tok, root / "llama-notes")
    solu = root / "solu-notes"  # TL-native, solu_ln: the shipped trainer, briefly (no card)
    subprocess.run([sys.executable, "-m", "brain.training.train", "--act", "solu_ln", "--layers", "2", "--d-model", "64",
                    "--d-mlp", "256", "--steps", "100", "--score-only", "--out", str(solu)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    env = {"HF_HUB_CACHE": str(cache), "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    session = synthetic_session(root / "session", bars=12, seed=3)
    return {"env": env, "llama": str(llama), "session": session, "root": root, "gpt2_folder": str(snapshot),
            "solu": str(solu)}


def cli(lab, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurojam.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **lab["env"]}, cwd=ROOT)


def each(lab, calls) -> list[subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: cli(lab, *args), calls))


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"{r.args[3:]}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def test_a_split_note_word_is_read_and_predicted(lab):
    from brain.models import load_model
    from brain.stream import read_session, session_events
    from recording import open_session

    model = load_model(lab["gpt2_folder"], "cpu")  # in this process the hub's cache was fixed at its import
    assert model.tokenizer.encode(" C#5")[0].__len__() == 3  # the tokenizer splits note words
    assert model.pieces_per_word == 3 and model.window_words(128) == 42
    notes = model.note_token_ids()
    assert {model.tokenizer.token_str(i): n for i, n in notes.items()}["ĠC"] == 60  # a first piece: its natural
    events = session_events(open_session(lab["session"]).log)
    results = read_session(model, events, context_tokens=128)
    assert all(r.acts is not None for r in results)  # every event read, the oldest too
    assert sum(r.predicted_note is not None for r in results) == len(results)
    assert len({r.predicted_note for r in results}) > 1
    # a neuron's direct logit effect names a note by its word's first piece (`ĠC`), never by `#` or `5`
    from brain.logit_effect import direct_logit_effect, promoted_notes, trained_note_ids

    candidates = trained_note_ids(model)
    assert candidates and all(model.tokenizer.token_str(i)[:2] in {f"Ġ{c}" for c in "ABCDEFG"} for i in candidates)
    promoted, effect = promoted_notes(model), direct_logit_effect(model, 1, 7)
    assert promoted[1, 7] == candidates[max(candidates, key=lambda i: float(effect[i]))]
    assert len(set(promoted[1].tolist())) > 3  # the neurons of a layer name several notes


def test_stats_then_demo_then_report_on_each_architecture(lab, tmp_path):
    for r in each(lab, [("model", "stats", "--model", GPT2, "--limit", "100", "--tokens", "20000"),
                        ("model", "stats", "--model", lab["llama"], "--limit", "100", "--tokens", "20000")]):
        assert "saved to" in ok(r).stdout
    info = ok(cli(lab, "model", "info", "--model", GPT2)).stdout
    assert "2 layers × 256 MLP neurons" in info and "no neuron statistics" not in info
    runs = each(lab, [("demo", "--model", GPT2, "--seconds", "6", "--no-view", "--out", str(tmp_path / "gpt2")),
                      ("demo", "--model", lab["llama"], "--seconds", "6", "--no-view", "--out", str(tmp_path / "llama"))])
    for name, r in zip(("gpt2", "llama"), runs):
        ok(r)
        stats = json.loads((tmp_path / name / "brain-session" / "stats.json").read_text())
        assert stats["counts"]["accomp_notes"] > 10, (name, stats["counts"])  # not silence
        assert (tmp_path / name / "report.html").stat().st_size > 10_000
    # the controls on a hub model: a random-weight copy (its own quantiles) must predict the human worse
    score, report = each(lab, [("score", str(tmp_path / "gpt2" / "session"), "--controls", "--json"),
                               ("report", str(tmp_path / "gpt2" / "session"), "--controls", "--out",
                                str(tmp_path / "controls.html"))])
    assert "random weights" in (tmp_path / "controls.html").read_text() if ok(report) else False
    scored = json.loads(ok(score).stdout)
    random = next(c for c in scored["controls"]["controls"] if c["name"] == "random weights")
    assert scored["controls"]["trained_prediction_hits"] > random["prediction_hits"] + 0.1, scored["controls"]


def test_steer_and_the_stage_on_a_hub_model(lab, tmp_path):
    steer_a_running_brain_and_watch_its_stage(GPT2, {**os.environ, **lab["env"]}, tmp_path)


def test_the_experiments_on_a_model_whose_tokenizer_splits_notes(lab, tmp_path):
    session, out = str(lab["session"]), tmp_path / "rows.parquet"
    texts = tmp_path / "m.txt"
    texts.write_text("| C4 D4 E4 F4 | G4 A4 B4 C5 |\n| D4 F#4 A4 D5 | A4 F#4 D4 r |\n")
    runs = each(lab, [
        ("neuron", "ablate", "1.3", session, "--model", GPT2, "--json"),
        ("neuron", "attribute", session, "--event", "5", "--model", GPT2, "--json"),
        ("neuron", "test", "0.1", "--match", str(texts), "--nomatch", str(texts), "--model", GPT2),
        ("neuron", "match", "--a", GPT2, "--b", lab["llama"], "--corpus", str(texts), "--json"),
        ("neuron", "patch", session, "--event", "-1", "--transpose", "3", "--layer", "1", "--model", GPT2,
         "--target", "D5", "--json", "--out", str(out)),  # D5 is split: its first piece is the target
        ("model", "corrupt", "--each", "skip", "--test-limit", "20", "--session", session, "--model", GPT2, "--json"),
        ("replay", session, "--fast", "--model", GPT2, "--out", str(tmp_path / "replay")),
        ("neuron", "ablate", "5.3", session, "--model", GPT2),
    ])
    for r in runs[:-1]:
        ok(r)
    assert json.loads(runs[4].stdout)["neuron_layer"] == 1  # --json with --out: stdout is JSON alone
    corrupt = json.loads(runs[5].stdout)
    assert corrupt["clean"]["test"]["accuracy"] is not None  # no dashes: the note logits are read
    assert runs[-1].returncode == 2 and "out of range" in runs[-1].stderr and "Traceback" not in runs[-1].stderr


def test_a_study_with_two_architectures_finds_a_model_folder_beside_its_spec(lab, tmp_path):
    import shutil

    study = tmp_path / "study"
    study.mkdir()
    shutil.copytree(lab["llama"], study / "twin")
    shutil.copytree(lab["session"], study / "s1")
    (study / "spec.yaml").write_text(f"sessions: ['s*']\nmodels: [{GPT2}, twin]\nmeasures: [neuron_stats, match]\n")
    r = ok(cli(lab, "study", str(study / "spec.yaml"), "--out", str(tmp_path / "out"), "--serial", timeout=600))
    from brain.science.study import errors, read_results

    assert errors(tmp_path / "out") == [], r.stdout
    assert len(read_results(tmp_path / "out", "match")) > 0


def test_a_solu_model_is_read_before_its_layernorm_and_plays(lab, tmp_path):
    """SoLU: neurons at the SoLU's own output (``ln.hook_in``, TransformerLens 3's hook_mid), steered there."""
    import torch

    from brain.models import load_model

    model = load_model(lab["solu"], "cpu")
    assert model.neuron_site == "mid" and model.hook_name(1) == "blocks.1.mlp.ln.hook_in"
    x = torch.tensor([[2, 5, 40, 44, 47, 5]])
    _, cache = model.bridge.run_with_cache(x, names_filter=lambda n: n.startswith("blocks.0.mlp."))
    assert not torch.allclose(cache["blocks.0.mlp.ln.hook_in"], cache["blocks.0.mlp.hook_post"])
    silenced = model.bridge.run_with_hooks(x, fwd_hooks=[(model.hook_name(0), lambda act, hook: act * 0)])
    assert (silenced - model.bridge(x)).abs().max() > 0.1  # what is read there is what the model goes on with
    assert "ln.hook_in" in ok(cli(lab, "model", "info", "--model", lab["solu"], "--short")).stdout
    ok(cli(lab, "model", "stats", "--model", lab["solu"], "--limit", "100", "--tokens", "20000"))
    ok(cli(lab, "demo", "--model", lab["solu"], "--seconds", "6", "--no-view", "--out", str(tmp_path / "solu")))
    stats = json.loads((tmp_path / "solu" / "brain-session" / "stats.json").read_text())
    # it plays, from its SoLU site: a model this small is seldom sure of a note (the prediction voice waits for
    # probability 0.5) and its units seldom pass their gate, so a quiet band, but not a silent one
    assert stats["counts"]["events"] > 30 and stats["counts"]["accomp_notes"] > 0, stats["counts"]
