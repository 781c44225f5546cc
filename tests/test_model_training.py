"""The training rows have the shape of every window the model is read at: <bos> first, then one tune's words."""

import itertools

import torch

from brain.training.train import IGNORE, packed_batch, piece_batch

BOS = 0


def tunes(n: int = 40, seed: int = 3) -> list[list[int]]:
    """Tunes with words no other tune has, so each row can be traced back to the tune it came from."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n):
        length = int(torch.randint(3, 300, (1,), generator=g))
        out.append([BOS, *(1000 * (k + 1) + i for i in range(length))])
    return out


def owner(word: int) -> int:
    return word // 1000 - 1


def test_piece_rows_are_bos_then_one_contiguous_stretch_of_one_tune_and_padding_has_no_loss():
    ts = tunes()
    x, y = piece_batch(ts, 400, 128, BOS, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (400, 128)
    from_start = 0
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert row_x[0] == BOS
        n = sum(t != IGNORE for t in row_y)
        assert all(t == IGNORE for t in row_y[n:]) and all(t == 0 for t in row_x[n:])  # right-padded
        assert row_x[1:n] == row_y[:n - 1]  # targets are the next words
        words = row_y[:n]
        k = owner(words[0])
        assert {owner(w) for w in words} == {k}
        tune = ts[k]
        start = tune.index(words[0])
        assert words == tune[start:start + n]  # contiguous, in order
        from_start += start == 1
    assert 150 < from_start < 280  # about half the rows open a tune, as the evaluation's first windows do


def test_packed_rows_open_like_pieces_then_run_on_into_the_next_tunes_without_padding():
    ts = tunes()
    stream = torch.tensor([w for t in ts for w in t])
    starts = torch.tensor([0, *itertools.accumulate(len(t) for t in ts)][:-1])
    lens = torch.tensor([len(t) for t in ts])
    x, y = packed_batch(stream, starts, lens, 300, 128, BOS, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (300, 128) and (y != IGNORE).all()
    flat = stream.tolist()
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert row_x[0] == BOS and row_x[1] != BOS
        assert row_x[1:] == row_y[:-1]
        at = flat.index(row_y[0])
        assert row_y == flat[at:at + 128]  # one stretch of the stream, each later tune after its own <bos>


def test_dropout_acts_in_training_only_and_leaves_the_weights_alone():
    import transformer_lens.model_bridge.sources.native  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    from brain.models import native_config
    from brain.training.train import add_dropout

    torch.manual_seed(0)
    net = TransformerBridge.boot_native(native_config(20, n_layers=2, d_model=32, d_mlp=64, n_ctx=16),
                                        model_name="tiny").original_model
    x = torch.randint(0, 20, (2, 16))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    plain = net(x)
    add_dropout(net, 0.5)
    assert torch.equal(net(x), plain)  # eval mode: the same function
    net.train()
    a, b = net(x), net(x)
    assert not torch.allclose(a, plain) and not torch.allclose(a, b)  # training: a fresh mask each pass
    assert net.state_dict().keys() == before.keys()


def test_transposed_rows_move_every_note_of_a_row_by_one_shift_and_leave_words_and_padding():
    from brain.encoder import vocabulary, word_note
    from brain.training.train import transpose_rows, transposition_table

    words = vocabulary()

    class Tok:  # the tokenizer's two calls transposition_table uses
        def get_vocab(self):
            return {w: i for i, w in enumerate(words)}

        def get_vocab_size(self):
            return len(words)

    table = transposition_table(Tok(), 2)
    assert len(table) == 6  # shifts −2..+3
    ids = {w: i for i, w in enumerate(words)}
    tune = [ids[w] for w in "<bos> | G4 A4 B4 | r D5 D5 |".split()]
    x = torch.tensor([tune[:-1]] * 64)
    y = torch.tensor([tune[1:]] * 64)
    y[:, -2:] = IGNORE
    tx, ty = transpose_rows(table, x, y, torch.Generator().manual_seed(0))
    assert (ty[:, -2:] == IGNORE).all() and torch.equal(tx[:, 1:-1], ty[:, :-2])  # targets still the next words
    shifts = set()
    for row in tx.tolist():
        moved = [(word_note(words[a]), word_note(words[b])) for a, b in zip(tune, row)]
        deltas = {b - a for a, b in moved if a is not None}
        assert len(deltas) == 1  # one shift for the whole row
        assert all(words[a] == words[b] for (a, b), (n, _) in zip(zip(tune, row), moved) if n is None)
        shifts |= deltas
    assert shifts == {-2, -1, 0, 1, 2, 3}


def test_stats_only_promotes_the_score_only_run_not_the_card_of_the_weights_it_replaced(tmp_path):
    """`--score-only` into a folder with a card (the default one) overwrites the weights and leaves training.json;
    `--stats-only` must describe those weights, not the card's old model, settings and curve."""
    import json

    import pytest

    from brain.training.train import saved_run

    with pytest.raises(SystemExit, match="neither training.json nor card.json"):
        saved_run(tmp_path)
    card = {"model": {"n_layers": 3}, "training": {"steps": 6000}, "curve": [{"step": 6000}]}
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert saved_run(tmp_path) == card
    run = {"model": {"n_layers": 4}, "training": {"steps": 9000}, "curve": [{"step": 9000}]}
    (tmp_path / "training.json").write_text(json.dumps(run))
    assert saved_run(tmp_path) == run


def test_training_on_a_device_torch_cannot_see_is_refused_in_one_line(capsys):
    import pytest

    from brain.training.train import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal cannot happen here")
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cuda", "--steps", "1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--device cuda" in err and "--device cpu" in err and "Traceback" not in err
