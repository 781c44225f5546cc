"""The sparse dictionary (issue 44): trained with sparsify's SparseCoder in our loop, read with plain torch, and
labels on both sides whose control must fail."""

import json

import pytest
import torch

from brain.units.dictionary import Dictionary, LayerDictionary
from brain.units.labels import UnitLabel, expected_outcomes, next_token, summary
from core.errors import ModelError


def planted_activations(n: int = 30_000, d: int = 64, directions: int = 24, active: int = 3, seed: int = 0):
    """Tokens made of a few of ``directions`` known unit vectors each (plus a little noise), as neurons would hold
    a few features at once."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.nn.functional.normalize(torch.randn(directions, d, generator=gen), dim=1)
    which = torch.stack([torch.randperm(directions, generator=gen)[:active] for _ in range(n)])
    coeff = torch.zeros(n, directions).scatter_(1, which, torch.rand(n, active, generator=gen) * 3 + 1)
    return coeff @ basis + 0.02 * torch.randn(n, d, generator=gen), basis, coeff


def test_the_dictionary_recovers_planted_directions():
    from brain.training.dictionary import train_layer

    acts, basis, coeff = planted_activations()
    d = train_layer(acts, latents=48, k=3, epochs=6, seed=0, progress=False)
    best = (basis @ d.W_dec.T).max(1).values  # each planted direction's closest decoder row
    assert (best > 0.9).float().mean() >= 0.9, best
    # and the feature for direction 0 is on where direction 0 is present
    f = int((basis[0] @ d.W_dec.T).argmax())
    on = d.encode(acts)[:, f] > 0
    present = coeff[:, 0] > 0
    assert (on & present).sum() >= 0.8 * present.sum() and (on & ~present).sum() <= 0.1 * present.sum()


def test_a_random_dictionary_recovers_nothing():
    """The check above can fail: an untrained dictionary's rows do not line up with the planted directions."""
    acts, basis, _ = planted_activations()
    w = torch.nn.functional.normalize(torch.randn(48, 64), dim=1)
    assert ((basis @ w.T).max(1).values > 0.9).float().mean() < 0.1


def test_save_load_round_trip_and_a_damaged_file_is_told(tmp_path):
    gen = torch.Generator().manual_seed(1)
    layer = LayerDictionary(torch.randn(32, 16, generator=gen), torch.zeros(32),
                            torch.nn.functional.normalize(torch.randn(32, 16, generator=gen), dim=1), torch.zeros(16), 4)
    Dictionary({0: layer, 1: layer}, {"latents": 32}).save(tmp_path / "d")
    back = Dictionary.load(tmp_path / "d")
    x = torch.randn(5, 16, generator=gen)
    assert torch.allclose(back[1].encode(x), layer.encode(x), atol=0.02) and back.card == {"latents": 32}
    assert ((back[0].encode(x) > 0).sum(1) == 4).all()  # k on per token
    (tmp_path / "d" / "dictionary.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelError, match="damaged"):
        Dictionary.load(tmp_path / "d")
    with pytest.raises(ModelError, match="brain.training.dictionary"):
        Dictionary.load(tmp_path / "nowhere")


def test_the_does_side_names_the_pushed_outcome_and_needs_a_lift_over_its_base_rate():
    from brain.neuron_labels import PreciseLabel

    effects = torch.zeros(3, 10)
    effects[0, 7], effects[1, 2], effects[2, 9] = 1.0, 1.0, 5.0  # token 9 is not an outcome: never named
    effects[2, 4] = 0.5
    assert expected_outcomes(effects, {2: "C4", 4: "|", 7: "D5"}).tolist() == [7, 2, 4]
    ids, position = torch.tensor([5, 6, 7, 8, 1, 2]), torch.tensor([0, 1, 2, 3, 0, 1])
    assert next_token(ids, position).tolist() == [6, 7, 8, -1, 2, -1]  # never across a piece's end
    reads = PreciseLabel("bar line", 0.9, 40, 0.85, 30, True)
    assert UnitLabel(reads, "D5", firings=30, hits=12, base_rate=0.1).does  # 40 % against 10 %
    assert not UnitLabel(reads, "D5", firings=30, hits=5, base_rate=0.1).does  # 17 %: under 2 ×
    assert not UnitLabel(reads, "D5", firings=5, hits=5, base_rate=0.1).does  # too few firings to say
    s = summary([UnitLabel(reads, "D5", 30, 12, 0.1), UnitLabel(reads, "D5", 30, 1, 0.1),
                 UnitLabel(PreciseLabel("", 0, 3, None, 0, False), "D5", 0, 0, 0.1)])
    assert (s["labelable"], s["clear_reads"], s["does_among_clear"]) == (2, 2, 1)


def test_the_shipped_dictionary_card_holds_and_its_labels_beat_the_control():
    from brain.models import MODELS_DIR

    folder = MODELS_DIR / "notes-default" / "dictionary"
    card = json.loads((folder / "card.json").read_text())
    control = json.loads((MODELS_DIR / "notes-default" / "dictionary-control" / "card.json").read_text())
    assert card["random_weights"] is False and control["random_weights"] is True
    trained, shuffled = card["labels"]["features"], control["labels"]["features"]
    assert trained["does_among_clear_fraction"] > shuffled["does_among_clear_fraction"] + 0.2
    assert Dictionary.load(folder).n_latents == card["latents"]


@pytest.mark.parametrize("which", ["dictionary", "dictionary-control"])
def test_the_shipped_dictionary_readme_says_what_its_card_says(tmp_path, which):
    from brain.models import MODELS_DIR
    from brain.training.dictionary import write_dictionary_md

    folder = MODELS_DIR / "notes-default" / which
    write_dictionary_md(json.loads((folder / "card.json").read_text()), tmp_path)
    assert (tmp_path / "README.md").read_text() == (folder / "README.md").read_text(), \
        "regenerate: python -m brain.training.dictionary --relabel"


def test_check_card_recomputes_the_dictionarys_card_and_fails_on_a_wrong_one():
    from brain.models import MODELS_DIR
    from brain.science.check_card import check_dictionary

    from brain.science.check_card import DICTIONARY_KEYS, compare

    measured, mismatches = check_dictionary(MODELS_DIR / "notes-default" / "dictionary", labels=False)
    assert mismatches == []  # the labels' recount is `python -m brain.science.check_card`'s (minutes)
    card = json.loads((MODELS_DIR / "notes-default" / "dictionary" / "card.json").read_text())
    card["layers"]["1"]["fvu"] += 0.01
    card["next_note_top1"]["spliced"] += 0.001
    wrong = compare({k: card[k] for k in DICTIONARY_KEYS if k != "labels"}, measured)
    assert len(wrong) == 2 and any("layers.1.fvu" in w for w in wrong), wrong


def test_the_full_effect_names_what_removing_a_unit_takes_away():
    """A planted unit on the last layer whose direction raises the bar line: removing it where it sounds lowers the
    bar line's probability most, so its full effect names "|"; the same unit turned round names something else."""
    from brain.models import load_model
    from brain.science.evaluate import corpus_splits
    from brain.units.labels import full_effects, outcome_ids

    model = load_model("notes-default", "cpu")
    layer, bar = model.n_layers - 1, model.tokenizer.vocab()["|"]
    w_u = model.bridge.W_U.float().detach()
    w_out = model.bridge.W_out[layer].float().detach()  # [d_mlp, d_model]
    push = (w_u[:, bar] - w_u.mean(1)) @ torch.linalg.pinv(w_out)  # [d_mlp]: through W_out, raises "|"
    direction = torch.stack([push, -push]) / push.norm()
    texts = corpus_splits(model)[1][:12]
    effects, counts = full_effects(model, texts, lambda _, acts: acts.norm(dim=-1, keepdim=True).expand(-1, 2),
                                   {layer: torch.zeros(2)}, {layer: direction})
    named = expected_outcomes(effects[layer], outcome_ids(model)).tolist()
    assert counts[layer].min() > 100 and named[0] == bar and named[1] != bar, named
