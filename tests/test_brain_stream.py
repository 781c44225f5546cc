"""The brain's core in-process on tiny TL-native models: alignment, top-k, pitch, steering, errors."""

import numpy as np
import pytest
import torch

from brain.config import SonifyConfig
from brain.encoder import NoteText, align_tokens, note_word, vocabulary
from brain.models import ModelError, build_tiny, load_model
from brain.logit_effect import direct_logit_effect, promoted_notes
from brain.voices import voices_of
from bridge.messages import Beat, Note
from brain.live.rig_view import RigView
from brain.live.sonify import Sonifier
from brain.stream import Hit, NeuronStream, StreamEvent, step_streams
from recording.harmony import Key


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_tiny(vocabulary(), seed=3, d_model=32, d_mlp=64, n_ctx=64)


def sample_text():
    t = NoteText()
    t.add_beat(True)
    for n, src in ((60, "human"), (64, "pet"), (67, "human")):
        t.add_note(n, src)
    t.add_beat(False)
    t.add_beat(True)
    t.add_note(72, "pet")
    return t


def bpe_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    return tok


def test_alignment_by_offsets_with_two_tokenizers(tiny):
    t = sample_text()
    words_ids, words_offs = tiny.tokenizer.encode(t.text)
    bpe = bpe_tokenizer(["C4 E4 G4 | r C5 D#3 F#7"])
    enc = bpe.encode(t.text)
    assert len(enc.ids) != len(words_ids)  # the two really cut the text differently
    for offsets in (words_offs, [tuple(o) for o in enc.offsets]):
        owner = align_tokens(offsets, t.spans)
        for i, span in enumerate(t.spans):
            pieces = [t.text[a:b] for (a, b), o in zip(offsets, owner) if o == i]
            assert "".join(pieces).strip() == t.text[span.start:span.end]


def direct_top_k(model, text, span, layers, k):
    ids, offs = model.tokenizer.encode(text)
    x = torch.tensor([[model.tokenizer.bos_id, *ids]])
    _, cache = model.bridge.run_with_cache(x)
    pos = [1 + i for i, (a, b) in enumerate(offs) if a < span.end and b > span.start]
    acts = torch.stack([cache[f"blocks.{L}.mlp.hook_post"][0, pos].max(0).values for L in layers])
    vals, idx = acts.flatten().topk(k)
    return [(layers[int(i) // model.d_mlp], int(i) % model.d_mlp) for i in idx]


def feed(stream, events):
    return stream.step([StreamEvent(kind, float(i), source="human", note=n, downbeat=d, seq=i)
                        for i, (kind, n, d) in enumerate(events)])


EVENTS = [("beat", -1, True), ("note", 60, False), ("note", 62, False), ("beat", -1, False), ("note", 67, False),
          ("beat", -1, True), ("note", 65, False)]


def test_top_k_matches_direct_run_with_cache(tiny):
    stream = NeuronStream(tiny, top_k=5, context_tokens=64)
    results = feed(stream, EVENTS)
    assert results
    for r in results:
        expected = direct_top_k(tiny, stream.text.text, stream.text.spans[stream.text.spans.index(r.spans[-1])],
                                [0, 1], 5)
        if len(r.spans) == 1:
            assert [(h.layer, h.index) for h in r.hits] == expected
    stream.close()


def test_batched_events_equal_one_at_a_time(tiny):
    a = NeuronStream(tiny, top_k=4, context_tokens=16)
    batched = feed(a, EVENTS * 4)  # long enough to cross window trims
    a.close()
    b = NeuronStream(tiny, top_k=4, context_tokens=16)
    single = []
    for i, e in enumerate(EVENTS * 4):
        single += b.step([StreamEvent(e[0], float(i), source="human", note=e[1], downbeat=e[2], seq=i)])
    b.close()
    assert [r.event.seq for r in batched] == [r.event.seq for r in single]
    for x, y in zip(batched, single):
        assert [(h.layer, h.index) for h in x.hits] == [(h.layer, h.index) for h in y.hits]
        assert [h.activation for h in x.hits] == pytest.approx([h.activation for h in y.hits], abs=1e-4)
    # each event's own prediction, not the batch's last: the prediction voice does not depend on batching
    assert [r.predicted_note for r in batched] == [r.predicted_note for r in single]
    assert sum(r.predicted_note is not None for r in batched) == len(batched)


def test_direct_logit_pitch_selection():
    model = build_tiny(vocabulary(), seed=5, d_model=32, d_mlp=64)
    g4 = model.tokenizer.vocab()[note_word(67)]
    with torch.no_grad():
        W_U = model.bridge.W_U
        model.bridge.blocks[1].mlp.out.weight[:, 7] = W_U[:, g4] * 50  # plant: neuron 1.7 writes G4's unembedding
    assert int(direct_logit_effect(model, 1, 7).argmax()) == g4
    assert int(promoted_notes(model)[1, 7]) == 67
    # the planted neuron plays G wherever the frame allows it: off the beat in C major (any note of the key), on the
    # beat over a chord with G (C major); over F major on the beat it plays the chord tone it pushes most, not G
    voices = voices_of(model, [4, 4])
    assert voices.home[1, 7] == 67 and int(np.argmax(voices.push[1, 7])) == 7
    rig = RigView()
    rig.observe(Beat(index=0, bar=0, beat=0, tempo_bpm=120, time=0.0))
    for i, n in enumerate([60, 64, 67, 72, 60, 64, 67, 65]):
        rig.observe(Note(source="human", note=n, t=i * 0.25))
    son = Sonifier(SonifyConfig(prediction_voice=False), rig, voices)
    c_major = Key(0, "major")
    assert son.allowed(c_major, (0, 4, 7), 2.5) == tuple(c_major.scale)  # off the beat: the key
    assert son.pitch(Hit(1, 7, 1.0, 1.0), son.allowed(c_major, (0, 4, 7), 2.5)) == 67
    assert son.pitch(Hit(1, 7, 1.0, 1.0), son.allowed(c_major, (0, 4, 7), 3.0)) == 67
    assert son.pitch(Hit(1, 7, 1.0, 1.0), son.allowed(c_major, (5, 9, 0), 3.0)) % 12 in (5, 9, 0)
    # choose_among=likely: the model's likely next notes narrow the choice (A and C likely: G is not among them)
    assert son.allowed(c_major, (5, 9, 0), 3.0, likely=[69, 72]) == (5, 9, 0)  # the default: the frame
    narrow = Sonifier(SonifyConfig(prediction_voice=False, choose_among="likely"), rig, voices)
    assert narrow.allowed(c_major, (5, 9, 0), 3.0, likely=[69, 72]) == (9, 0)
    notes = son.notes_for([Hit(1, 7, 3.0, 1.2)], 2.0)  # due at 2.25 s: off the beat
    assert [n.note for n in notes] == [67]  # the accompaniment plays the note the neuron pushes
    # the random-weight control's voices are not the trained ones
    from brain.science.controls import random_weights

    assert (voices_of(random_weights(model), [4, 4]).home != voices.home).mean() > 0.5


def test_steering_changes_activations_and_predictions(tiny):
    plain = NeuronStream(tiny, top_k=3, context_tokens=64)
    r0 = feed(plain, EVENTS)[-1]
    logits0 = plain.last_logits.clone()
    top = r0.hits[0]
    plain.close()
    steered = NeuronStream(tiny, top_k=3, context_tokens=64)
    steered.steering.set(top.layer, top.index, 0.0)
    r1 = feed(steered, EVENTS)[-1]
    assert (top.layer, top.index) not in [(h.layer, h.index) for h in r1.hits]
    if top.layer == 0:
        assert not torch.allclose(steered.last_logits, logits0)
    steered.steering.set(top.layer, top.index, 3.0)
    r2 = feed(steered, [("note", 60, False)])[-1]
    assert r2.hits[0].activation != pytest.approx(r1.hits[0].activation)
    steered.close()


def test_out_of_range_neurons_and_factors_are_refused(tiny):
    with pytest.raises(ModelError, match=r"layer 99 is out of range .*valid: 0\.\.1"):
        NeuronStream(tiny, layers=[99])
    s = NeuronStream(tiny)
    with pytest.raises(ModelError, match=r"neuron 100000 is out of range .*valid: 0\.\.63"):
        s.steering.set(0, 100000, 0.0)
    s.close()
    # the factor's range is checked where a factor enters: the config section and the steer message
    from bridge.messages import MessageError, Steer, encode
    from core.errors import ConfigError
    from neurojam.config import load_config

    with pytest.raises(ConfigError, match=r"brain.steering\[0\].factor.*<= 10"):
        load_config(None, ["brain.steering=[{layer: 0, neuron: 1, factor: 99}]"])
    with pytest.raises(MessageError, match="factor"):
        encode(Steer(layer=0, neuron=1, factor=99.0))


def test_unknown_model_name_suggests():
    with pytest.raises(ModelError, match="Did you mean 'solu-1l'"):
        load_model("solu-11")
    with pytest.raises(ModelError, match="notes-default"):
        load_model("notes-defualt")


def test_missing_hub_weights_say_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="hf download gpt2"):
        load_model("gpt2")


def run_events(stream, events, steer_at=None):
    out = []
    for i, e in enumerate(events):
        if steer_at is not None and i == steer_at:
            stream.steering.set(0, 3, 0.0)
        batch = [StreamEvent(e[0], float(i), source="human", note=e[1], downbeat=e[2], seq=i)]
        out += [(r, stream.last_logits.clone()) for r in stream.step(batch)]
    return out


@pytest.mark.parametrize("steer_at", [None, 9])
def test_kv_cache_path_matches_full_recompute(tiny, steer_at):
    full = NeuronStream(tiny, top_k=6, context_tokens=16, kv_cache=False)
    cached = NeuronStream(tiny, top_k=6, context_tokens=16, kv_cache=True)
    assert cached._kv is not None and full._kv is None
    a = run_events(full, EVENTS * 5, steer_at)  # long enough to cross several window cuts
    b = run_events(cached, EVENTS * 5, steer_at)
    full.close()
    cached.close()
    assert len(a) == len(b) > 20
    for (ra, la), (rb, lb) in zip(a, b):
        assert [(h.layer, h.index) for h in ra.hits] == [(h.layer, h.index) for h in rb.hits]
        assert [h.activation for h in ra.hits] == pytest.approx([h.activation for h in rb.hits], abs=1e-4)
        assert torch.allclose(la, lb, atol=1e-4)
    assert max(r.tokens for r, _ in b) <= 16


def test_rigs_in_one_forward_pass_hear_only_themselves(tiny):
    """Three rigs with different tunes, context lengths, batch sizes and steering share padded forward passes;
    each gets exactly what it would get alone (window cuts included)."""
    import random

    rng = random.Random(5)
    tunes = [[("note", 55 + (i * 7 + j * 3) % 24, False) if j % 3 else ("beat", -1, j % 6 == 0) for j in range(90)]
             for i in range(3)]
    together = [NeuronStream(tiny, top_k=5, context_tokens=24, kv_cache=True) for _ in tunes]
    alone = [NeuronStream(tiny, top_k=5, context_tokens=24, kv_cache=True) for _ in tunes]
    for streams in (together, alone):
        streams[1].steering.set(0, 5, 0.0)
        streams[2].steering.set(1, 7, 2.5)
    cursor, got, want, batched_steps = [0, 0, 0], [[], [], []], [[], [], []], 0
    while any(c < len(t) for c, t in zip(cursor, tunes)):
        work = []
        for i, tune in enumerate(tunes):
            n = rng.choice([0, 1, 1, 2, 3]) if i else rng.choice([1, 2])  # rigs differ in how much arrives
            events = [StreamEvent(k, float(j), source="human", note=note, downbeat=d, seq=j)
                      for j, (k, note, d) in enumerate(tune[cursor[i]:cursor[i] + n], start=cursor[i])]
            cursor[i] += n
            if events:
                work.append((i, events))
                want[i] += alone[i].step(events)
        batched_steps += len(work) > 1
        for (i, _), results in zip(work, step_streams([(together[i], ev) for i, ev in work])):
            got[i] += results
    assert batched_steps > 20
    for g, w in zip(got, want):
        assert len(g) == len(w) > 50
        for x, y in zip(g, w):
            assert x.event.seq == y.event.seq and x.predicted_note == y.predicted_note
            assert [(h.layer, h.index) for h in x.hits] == [(h.layer, h.index) for h in y.hits]
            assert [h.activation for h in x.hits] == pytest.approx([h.activation for h in y.hits], abs=1e-4)
    assert [h.index for h in got[0][-1].hits] != [h.index for h in got[1][-1].hits] or got[0][-1].text != got[1][-1].text
    for s in together + alone:
        s.close()


def test_kv_cache_batched_equals_one_at_a_time(tiny):
    a = NeuronStream(tiny, top_k=4, context_tokens=16, kv_cache=True)
    batched = feed(a, EVENTS * 4)
    b = NeuronStream(tiny, top_k=4, context_tokens=16, kv_cache=True)
    single = [r for r, _ in run_events(b, EVENTS * 4)]
    for x, y in zip(batched, single):
        assert [(h.layer, h.index) for h in x.hits] == [(h.layer, h.index) for h in y.hits]
    a.close()
    b.close()


def test_top_neurons_break_ties_the_same_way_whatever_the_float_noise():
    """Neurons at exactly their calibration top all normalize to 1.0; a batched forward differs by ~1e-6."""
    import torch

    from brain.stream import top_neurons

    norm = torch.tensor([0.2, 1.0, 0.5, 1.0, 1.0, 0.9999999, 0.3])
    raw = torch.tensor([0.4, 2.05, 1.0, 3.77, 3.08, 2.49, 0.6])
    want = [3, 4, 5, 1]  # the four tied at 1.0, by raw activation
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        noise = (torch.rand(7, generator=gen) - 0.5) * 4e-6
        assert top_neurons(norm + noise, raw + noise, 4) == want
    assert top_neurons(norm, raw, 2) == [3, 4] and top_neurons(norm, raw, 0) == []
    assert top_neurons(torch.tensor([0.1, 0.7]), torch.tensor([5.0, 0.1]), 5) == [1, 0]  # a real gap beats raw size
