"""The live stream written as the corpus writes a tune: each rule, and a raw stream that breaks it."""

from brain.corpus_style import written
from brain.stream import StreamEvent, text_of

PERIOD = 0.5  # 120 BPM


def beat(i: int, per_bar: int = 4) -> StreamEvent:
    return StreamEvent("beat", i * PERIOD, downbeat=i % per_bar == 0, seq=1000 + i, beat=i % per_bar,
                       beats_per_bar=per_bar, period=PERIOD)


def note(t: float, n: int, source: str = "human", drum: bool = False, seq: int = 0) -> StreamEvent:
    return StreamEvent("note", t, source=source, note=n, seq=seq, drum=drum)


def words(events) -> list[str]:
    return text_of(written(events)).text.split()


def test_a_note_just_before_the_beat_comes_after_its_bar_line():
    raw = [beat(0), note(0.0, 62), beat(1), beat(2), beat(3), note(1.98, 64), beat(4), note(2.2, 66)]
    assert words(raw) == ["|", "D4", "r", "r", "r", "|", "E4", "F#4"]  # the rig's beat 4 arrived after E4: no 2nd bar
    assert text_of(raw).text.split()[-3:] == ["E4", "|", "F#4"]  # written raw, the bar line split the onset


def test_a_dense_tune_gets_a_bar_line_each_half_bar():
    sixteenths = [note(i * PERIOD / 4 + 0.01, 60 + i % 5, seq=i) for i in range(32)]  # 4 a beat, 2 bars
    raw = sorted([beat(i) for i in range(8)] + sixteenths, key=lambda e: e.time)
    out = words(raw)
    assert out.count("|") == 4 and len(out) / out.count("|") == 9  # 8 notes and a bar line, as a reel's measure
    eighths = [note(i * PERIOD / 2 + 0.01, 60 + i % 5, seq=i) for i in range(16)]
    out = words(sorted([beat(i) for i in range(8)] + eighths, key=lambda e: e.time))
    assert out.count("|") == 2  # 2 notes a beat: the rig's bar is the measure


def test_one_onset_one_word_and_a_pet_press_is_one_repeat():
    raw = [beat(0), note(0.1, 67), note(0.11, 71), note(0.3, 60, "pet"), note(0.305, 64, "pet"),
           note(0.31, 67, "pet"), note(0.6, 36, "pet", drum=True)]
    assert words(raw) == ["|", "G4", "G4", "G4"]  # the chord's second note folded; each press repeats G4
