"""Neuron experiments on tiny models with planted neurons, and the session report."""

import random
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from brain.encoder import note_word, vocabulary
from brain.science.experiments import ablate, attribute, correlate, hypothesis_test, match_neurons
from brain.models import build_tiny
from tests.test_sessions import synthetic_session

RNG = random.Random(0)


def note_texts(n, length=24, must=None, avoid=None, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = []
        for i in range(length):
            if i % 5 == 0:
                words.append("|")
                continue
            note = rng.choice([60, 62, 64, 65, 67, 69, 71, 72])
            while avoid is not None and note == avoid:
                note = rng.choice([60, 62, 64, 65, 69, 71, 72])
            words.append(note_word(note))
        if must is not None:
            words[rng.randrange(1, length)] = note_word(must)
        out.append(" ".join(words))
    return out


def plant(model, token_id, layer=0, neuron=5, strength=12.0):
    """Make neuron (layer, neuron) fire where the current token is ``token_id``."""
    with torch.no_grad():
        E = model.bridge.W_E
        direction = E[token_id] - E.mean(0)
        direction = direction / direction.norm()
        model.bridge.blocks[layer].mlp.__getattr__("in").weight[neuron] = strength * direction
        model.bridge.blocks[layer].mlp.__getattr__("in").bias[neuron] = -strength * 0.35


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return build_tiny(vocabulary(), seed=11, d_model=32, d_mlp=64, n_ctx=64)


def test_ablating_a_neuron_with_zero_output_weights_changes_nothing(tiny):
    text = " ".join(note_texts(3, seed=1))
    with torch.no_grad():
        tiny.bridge.blocks[0].mlp.out.weight[:, 9] = 0
    for mode in ("zero", "mean"):
        assert ablate(tiny, text, 0, 9, mode).delta == pytest.approx(0.0, abs=1e-6)
    assert abs(ablate(tiny, text, 0, 10, "zero").delta) > 1e-5  # a live neuron does change the loss


@pytest.mark.parametrize("target", ["predicted-note", "|", "G4"])
def test_attribution_matches_finite_differences(tiny, target):
    text = note_texts(1, length=20, seed=2)[0]
    predicted, rows = attribute(tiny, text, len(text), top=3, target=target)
    if target == "predicted-note":  # the most likely next *note*, whatever the most likely token
        assert tiny.tokenizer.vocab()[predicted] in tiny.note_token_ids()
    else:
        assert predicted == target
    tok = tiny.tokenizer
    ids, _ = tok.encode(text)
    x = torch.tensor([[tok.bos_id, *ids]])
    target = tok.vocab()[predicted]
    for r in rows:
        def prob(scale):
            def hook(act, hook=None):
                act = act.clone()
                act[0, -1, r.index] *= scale
                return act
            with torch.no_grad():
                logits = tiny.bridge.run_with_hooks(x, fwd_hooks=[(tiny.hook_name(r.layer), hook)])
            return float(torch.softmax(logits[0, -1].double(), -1)[target])
        eps = 1e-3
        fd = (prob(1 + eps) - prob(1 - eps)) / (2 * eps)  # d prob / d scale = activation × gradient
        assert fd == pytest.approx(r.score, rel=0.05, abs=1e-6)


def test_hypothesis_test_separates_a_planted_neuron_not_a_random_one(tiny):
    g4 = tiny.tokenizer.vocab()[note_word(67)]
    plant(tiny, g4, layer=0, neuron=5)
    match = note_texts(40, must=67, seed=3)
    nomatch = note_texts(40, avoid=67, seed=4)
    planted = hypothesis_test(tiny, 0, 5, match, nomatch)
    assert planted.verdict.startswith("supported") and planted.p_value < 1e-6
    texts = note_texts(80, seed=5)
    random_split = hypothesis_test(tiny, 1, 17, texts[:40], texts[40:])
    assert random_split.verdict.startswith("not supported")


def bpe(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "isolated")
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=60, special_tokens=["<pad>", "<unk>", "<bos>"]))
    return tok


def test_neuron_match_finds_a_planted_copy_across_tokenizers():
    corpus = note_texts(60, seed=6)
    a = build_tiny(vocabulary(), seed=21, d_model=32, d_mlp=64, n_ctx=128)
    b = build_tiny(tokenizer=bpe(corpus), seed=22, d_model=32, d_mlp=48, n_ctx=128)
    text = corpus[0]
    ids_a, _ = a.tokenizer.encode(text)
    ids_b, offs_b = b.tokenizer.encode(text)
    assert len(ids_a) != len(ids_b)  # really different tokenizations
    word = note_word(67)
    plant(a, a.tokenizer.vocab()[word], layer=1, neuron=3)
    sample = f"{word} C4"
    ids, offs = b.tokenizer.encode(sample)
    last_of_word = next(i for i, (s, e) in zip(ids, offs) if s < len(word) <= e)
    plant(b, last_of_word, layer=0, neuron=40)
    matches = {m.a: m for m in match_neurons(a, b, corpus, top=1)}
    assert matches["1.3"].b == "0.40" and matches["1.3"].r > 0.5
    others = sorted((m.r for k, m in matches.items() if m.b == "0.40" and k != "1.3"), reverse=True)
    assert not others or others[0] < matches["1.3"].r


def test_correlate_is_pearson():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 3)), rng.normal(size=(200, 4))
    b[:, 2] = a[:, 1] * 3 + 1
    c = correlate(a, b)
    ref = np.corrcoef(a.T, b.T)[:3, 3:]
    assert np.allclose(c, ref, atol=1e-4) and c[1, 2] == pytest.approx(1.0, abs=1e-4)


class Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.cards, self.external = set(), [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if a.get("class") == "card":
            self.cards += 1
        for key in ("src", "href"):
            if a.get(key, "").startswith("http"):
                self.external.append(a[key])


def test_report_has_every_section_and_is_self_contained(tmp_path):
    from brain.science.report import build_report

    session = synthetic_session(tmp_path / "s", bars=8)
    out = build_report(session, tmp_path / "r.html", model_name="notes-default", progress=False)
    page = Sections()
    page.feed(out.read_text())
    assert {"piano-roll", "heatmap", "neuron-cards", "pet-stats"} <= page.ids
    assert len(page.imgs) == 4 and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert page.cards == 8 and not page.external
    assert "direct logit effect" in out.read_text() and "calibration corpus" in out.read_text()


def test_experiment_commands_print_json(tmp_path, capsys):
    """The commands' own code in this process (the model loads once, not once per command: 30 s of CI)."""
    import json
    from types import SimpleNamespace

    from neurojam.cli import main
    from tests.conftest import NEURONS_VALID

    def run_cli(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    session = synthetic_session(tmp_path / "s", bars=6)
    r = run_cli("neuron", "ablate", "1.42", str(session), "--mode", "mean", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["neuron"] == "1.42"
    r = run_cli("neuron", "attribute", str(session), "--event", "3", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["neurons"]) == 10
    r = run_cli("neuron", "ablate", "1.9999", str(session))
    assert r.returncode == 2 and NEURONS_VALID in r.stderr
    r = run_cli("neuron", "attribute", str(session), "--event", "999")
    assert r.returncode == 2 and "out of range" in r.stderr
    r = run_cli("neuron", "attribute", str(session), "--event", "3", "--target", "|", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["target"] == "|"
    r = run_cli("neuron", "attribute", str(session), "--event", "3", "--target", "H9")
    assert r.returncode == 2 and "not a token" in r.stderr
