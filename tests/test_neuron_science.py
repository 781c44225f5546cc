"""The neuron science a researcher would sign: reading windows, promoted notes, labels by selectivity."""

import numpy as np
import pytest
import torch

from brain.encoder import BAR, note_word, vocabulary
from brain.logit_effect import direct_logit_effect, promoted_notes, trained_note_ids
from brain.models import build_tiny
from brain.neuron_labels import POSITION_TRAITS, auroc, best_labels, token_traits
from tests.test_sessions import synthetic_session


def test_the_report_reads_a_session_longer_than_the_context_as_the_live_brain_did(tmp_path):
    """The live brain (a replay: the brain node over the real bridge) and the report's reader give the same
    top-k neurons for every event of a session three times longer than the model's context."""
    from brain.models import load_model
    from brain.neuron_stats import load_stats
    from brain.live.replay import replay
    from brain.science.report import build_report
    from brain.stream import read_session, session_events
    from neurojam.config import load_config
    from recording.jam import jam_from_log
    from recording.log import read_session as read_log

    session = synthetic_session(tmp_path / "s", bars=80)
    config = load_config(None, [f"session.dir={tmp_path}"])
    model = load_model(config.brain.model, "cpu")
    events = session_events(read_log(session))
    assert len(events) > 3 * model.n_ctx  # the window is cut several times
    out = replay(session, config, speed=None, out=tmp_path / "live", progress=False)
    live = {n.event_seq: n.hits for n in jam_from_log(read_log(out)).neurons}
    offline = {r.event.seq: r.hits for r in read_session(model, events, context_tokens=config.brain.context_tokens,
                                                         top_k=config.brain.top_k,
                                                         stats=load_stats(model, config.brain.stats_dir))}
    assert len(live) == len(offline) > 3 * model.n_ctx
    for seq, hits in offline.items():
        got = [(h.layer, h.index) for h in live[seq]]
        want = [(h.layer, h.index) for h in hits]
        if got != want:  # only a near-tie may swap places
            assert [h.normalized for h in live[seq]] == pytest.approx([h.normalized for h in hits], abs=1e-4), seq
    assert build_report(session, tmp_path / "r.html", progress=False).exists()


def planted_model():
    model = build_tiny(vocabulary(), seed=5, d_model=32, d_mlp=64)
    vocab = model.tokenizer.vocab()
    g4, a4 = vocab[note_word(67)], vocab[note_word(69)]
    with torch.no_grad():
        W_U = model.bridge.W_U
        out = model.bridge.blocks[1].mlp.out.weight  # [d_model, d_mlp]
        out[:, 7] = W_U[:, g4] * 50 + W_U[:, a4] * 30  # neuron 1.7: G4 most, A4 second
    return model, g4, a4


def test_promoted_notes_are_only_trained_note_words():
    model, g4, a4 = planted_model()
    assert int(promoted_notes(model)[1, 7]) == 67  # no counts: every note of the melodic range may be promoted
    model.card = {"vocabulary": {"train_counts": {note_word(n): 500 for n in range(48, 84)} | {"G4": 3}}}
    trained = trained_note_ids(model)
    assert g4 not in trained and a4 in trained  # G4 was seen 3 times: its unembedding row is noise
    assert int(promoted_notes(model)[1, 7]) == 69
    assert set(promoted_notes(model).flatten().tolist()) <= set(trained.values())


def test_the_direct_effect_goes_through_the_final_layernorm():
    model, g4, _ = planted_model()
    state = model.bridge.state_dict()
    with torch.no_grad():  # an uneven LayerNorm scale, as in a trained model
        gamma = torch.linspace(0.5, 1.5, state["ln_final.weight"].numel())
        state["ln_final.weight"].copy_(gamma)
    w = model.bridge.W_out[1, 7].float()
    want = ((w - w.mean()) * gamma) @ model.bridge.W_U.float()
    assert torch.allclose(direct_logit_effect(model, 1, 7), want, atol=1e-4)
    assert not torch.allclose(direct_logit_effect(model, 1, 7), w @ model.bridge.W_U.float(), atol=1e-2)


def synthetic_tokens(n_chunks=60, length=100, seed=0):
    """Tunes in windows: bar lines every 4 notes, notes A3..A5, positions within each window."""
    rng = np.random.default_rng(seed)
    words, chunk, position = [], [], []
    for c in range(n_chunks):
        for p in range(length):
            words.append(BAR if p % 5 == 0 else note_word(int(rng.integers(57, 81))))
            chunk.append(c)
            position.append(p)
    return words, np.array(chunk), np.array(position), rng


def test_a_planted_trait_neuron_gets_its_label_and_a_position_neuron_is_recognised():
    words, chunk, position, rng = synthetic_tokens()
    traits = token_traits(words, chunk, position)
    is_bar = np.array([w == BAR for w in words])
    acts = torch.tensor(np.stack([
        is_bar * 2.0 + rng.normal(0, 0.3, len(words)),  # neuron 0: fires on bar lines
        np.exp(-position / 3.0) * 3 + rng.normal(0, 0.05, len(words)),  # neuron 1: the start of the window
        rng.normal(0, 1, len(words)),  # neuron 2: noise
    ], axis=1), dtype=torch.float32)
    labels = best_labels(auroc(acts, traits), traits)
    assert labels[0].trait == "bar line" and labels[0].auroc > 0.95 and labels[0].clear
    assert labels[0].text() == f"bar line, AUROC {labels[0].auroc:.2f}"
    assert labels[0].base_rate == pytest.approx(is_bar.mean())
    assert labels[1].position and labels[1].trait == POSITION_TRAITS[0] and labels[1].auroc > 0.95
    assert "position neuron" in labels[1].text()
    assert not labels[2].clear and labels[2].text().startswith("no clear trait")


def test_the_label_score_is_selectivity_not_the_share_of_the_top_20():
    """A neuron whose 20 strongest tokens are all A4 but that stays quiet on almost every other A4: the top-20
    share says "A4 (100 %)", its AUROC for A4 is near chance, so A4 is not its clear label."""
    words, chunk, position, rng = synthetic_tokens()
    traits = token_traits(words, chunk, position)
    a4 = np.flatnonzero(np.array([w == "A4" for w in words]))
    acts = rng.normal(0, 1, len(words))
    acts[a4] = rng.normal(-0.3, 1, len(a4))  # A4 in general: a little below the rest
    acts[a4[:20]] = 10 + rng.random(20)  # ... except 20 of them, the strongest of all
    top20 = np.argsort(-acts)[:20]
    assert all(words[i] == "A4" for i in top20)  # top-20 share: 100 %
    scores = auroc(torch.tensor(acts[:, None], dtype=torch.float32), traits)
    a4_score = float(scores[traits.names.index("on A4"), 0])
    assert a4_score < 0.6
    label = best_labels(scores, traits)[0]
    assert not (label.trait == "on A4" and label.clear)


def test_ties_at_zero_get_their_mean_rank():
    words, chunk, position, _ = synthetic_tokens(n_chunks=10)
    traits = token_traits(words, chunk, position)
    acts = torch.zeros(len(words), 1)  # a dead neuron: every value tied
    assert np.allclose(auroc(acts, traits)[:, 0], 0.5)


def test_every_word_the_brain_reads_was_trained_pet_drums_included(tmp_path):
    from brain.encoder import NoteText
    from brain.models import load_model
    from brain.stream import session_text
    from recording.log import read_session as read_log

    t = NoteText()
    t.add_note(36, "pet", drum=True)  # before any melody: a rest
    t.add_note(67, "human")
    t.add_note(38, "pet", drum=True)  # the pet echoes the last melody note
    t.add_note(60, "pet")  # a pitched pad is a note like any other
    assert t.text.split() == ["r", "G4", "G4", "C4"]
    model = load_model("notes-default", "cpu")
    counts = model.card["vocabulary"]["train_counts"]
    words = session_text(read_log(synthetic_session(tmp_path / "s", bars=8))).text.split()
    notes = [w for w in words if w not in ("|", "r")]
    assert notes and all(counts.get(w, 0) >= 50 for w in notes), [w for w in notes if counts.get(w, 0) < 50]
    assert "C2" not in words  # the kick pad (MIDI 36) of the synthetic pet


def test_a_context_repeated_at_every_tune_start_counts_once_in_the_quantiles():
    """Every tune starts `| D4 ...`: the same context, so the same activation, thousands of times. Counted each
    time, a neuron that fires there has that value as its high quantile; counted once, it is one measurement."""
    from brain.neuron_stats import QUANTILES, DistinctContexts, _Quantiles

    rng = np.random.default_rng(0)
    ids, pos, acts = [], [], []
    for _ in range(2000):  # pieces of 50 tokens, all starting with the same two tokens
        piece = [5, 7, *rng.integers(10, 130, 48).tolist()]
        ids += piece
        pos += list(range(len(piece)))
        acts += [10.0, 10.0, *rng.normal(0, 1, 48).tolist()]
    ids_t, pos_t = torch.tensor(ids), torch.tensor(pos)
    acts_t = torch.tensor(acts, dtype=torch.float32)[:, None]
    keep = DistinctContexts().mask(ids_t, pos_t)
    assert keep[:2].all() and not keep[50:52].any()  # the start: once
    assert int(keep.sum()) > 0.95 * (len(ids) - 2 * 2000)  # the rest: distinct contexts are kept
    q99 = QUANTILES.index(0.99)
    every = _Quantiles(len(ids), 1)
    every.add(acts_t)
    once = _Quantiles(len(ids), 1)
    once.add(acts_t[keep])
    assert float(every.result()[0, q99]) == 10.0  # 4 % of the tokens are the start
    assert float(once.result()[0, q99]) < 3.0  # the 0.99 quantile of the rest: a normal's, about 2.3
    assert once.n_total == int(keep.sum())


def test_labels_by_precision_where_the_neuron_sounds():
    """Neuron 0 passes the gate on 30 tokens, 27 of them bar lines (90 %); neuron 1 on 30, 21 bar lines (70 %): only
    neuron 0's label is clear. Neuron 2 is 90 % on the choosing tokens but 60 % held out: not clear either. Neuron 3
    passes too rarely to say."""
    from brain.neuron_labels import GateCounts, present_now, precise_labels

    names = ["bar line", "rest", "on A4"]

    def counts(rows):  # rows: (firings, bar lines among them)
        return GateCounts(names, np.array([[f for f, _ in rows]]),
                          np.array([[[b, 0, f - b] for f, b in rows]]))

    choose = counts([(30, 27), (30, 21), (30, 27), (5, 5)])
    check = counts([(40, 38), (40, 30), (40, 24), (2, 2)])
    labels = precise_labels(choose, check)
    assert labels["0.0"].clear and labels["0.0"].text() == "bar line (95% of 40 held-out firings)"
    assert not labels["0.1"].clear and labels["0.1"].text().startswith("fires on many things (best: bar line")
    assert labels["0.2"].precision == pytest.approx(0.9) and not labels["0.2"].clear
    assert not labels["0.3"].clear and "too rarely" in labels["0.3"].text()
    # whether the trait is true now, by the same rules as the labels' traits
    window = ["|", "A4", "B4", "|", "C5"]
    assert present_now("first note of a bar", window) is True and present_now("rising step", window) is True
    assert present_now("bar line", window) is False and present_now("on A4", window[:2]) is True
    assert present_now("on C5", window[:3]) is False and present_now("", window) is None


def test_a_best_trait_under_the_bar_never_reads_as_the_bar():
    from brain.neuron_labels import CLEAR, Label

    assert Label("on A4", CLEAR - 0.0004, 0.1, False).text() == "no clear trait (best: on A4, AUROC 0.74)"


def test_the_live_traits_of_a_word_are_the_labels_traits():
    """traits_now (one word, live) and token_traits (every token, labelling, the context traits too) agree on every
    word of real windows."""
    from brain.neuron_labels import CONTEXT_TRAITS, token_traits, traits_now

    words, chunk, position, _ = synthetic_tokens()
    window = words[:100]
    traits = token_traits(window, np.zeros(len(window)), np.arange(len(window)), context=True)
    for name in CONTEXT_TRAITS:  # each context trait occurs in these windows, and not everywhere
        assert 0 < traits.matrix[:, traits.names.index(name)].sum() < len(window), name
    for i in range(len(window)):
        expected = {name for name, on in zip(traits.names, traits.matrix[i]) if on}
        assert traits_now(window[:i + 1]) == expected, (i, window[max(0, i - 3):i + 1])


def test_context_traits_read_the_key_so_far_the_place_in_the_bar_and_a_cadence():
    from brain.neuron_labels import traits_now

    tune = "| D4 E4 F#4 G4 | A4 B4 C#5 D5 | A4 F#4 G4 E4 |".split()
    assert "note 3 of a bar" in traits_now(tune[:4]) and "on the tonic (key so far)" not in traits_now(tune[:2])
    end = traits_now(tune + ["D4"])  # D major by now: the tonic on a downbeat after the second degree
    assert {"on the tonic (key so far)", "cadence (tonic on a downbeat)", "first note of a bar"} <= end
    assert "cadence (tonic on a downbeat)" not in traits_now(tune[:-1] + ["D4"])  # the same tonic inside a bar
    assert "outside the key so far" in traits_now(tune + ["C4"]) and "on the fifth (key so far)" in traits_now(tune + ["A4"])
