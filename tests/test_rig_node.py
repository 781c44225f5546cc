"""The RigNode in-process with the sim GPIO backend: pads sound at once, samples, shutdown state."""

import math
import struct
import wave

import pytest

from neurojam.config import load_config
from rig.midi_io import RecordingOutput
from rig.node import RigNode


def make_node(tmp_path, ports, *sets):
    cfg = load_config(None, [f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}",
                             f"session.dir={tmp_path}", *sets])
    return RigNode(cfg, output=RecordingOutput())


def press(node, index):
    pad = node.pads[index]
    pad.pin.drive(not pad.active_low)


def test_pad_press_plays_its_chord_immediately(tmp_path, ports):
    node = make_node(tmp_path, ports)
    node.beats.start()
    press(node, 3)  # the chord pad
    ons = [(t, m.note) for t, m in node.output.log if m.type == "note_on"]
    assert [n for _, n in ons] == [60, 64, 67, 96]  # the chord first, then the marker (every press earns at level 1)
    assert [m.channel for _, m in node.output.log if m.type == "note_on"] == [0, 0, 0, 15]
    assert node.counts["pad_presses"] == 1
    node.close()


def test_close_leaves_dispenser_low_and_nothing_sounding(tmp_path, ports):
    node = make_node(tmp_path, ports, "rig.dispenser.min_interval_s=1")
    node.timeline.start()
    node.beats.start()
    press(node, 0)
    node.dispenser.request(source="manual")
    node.close()
    node.close()  # safe twice
    assert node.output.sounding == set()
    assert node.devices.factory.outputs[27].level is False
    assert any(m.type == "control_change" and m.control == 123 for _, m in node.output.log)


def test_pad_can_play_an_audio_file(tmp_path, ports, monkeypatch):
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    path = tmp_path / "woof.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 20))) for i in range(22050)))
    node = make_node(tmp_path, ports, f"rig.pads=[{{pin: 5, sound: {{file: '{path}'}}}}]", "rig.training.enabled=false")
    node.beats.start()
    press(node, 0)
    assert node.devices.samples.played == 1
    assert node.devices.samples.length_s(0) == pytest.approx(0.5, abs=0.01)
    assert not [m for _, m in node.output.log if m.type == "note_on"]  # the file, not MIDI
    node.close()


def test_missing_audio_file_is_a_clear_error(tmp_path, ports, monkeypatch):
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    from core.errors import DeviceError
    with pytest.raises(DeviceError, match="not found"):
        make_node(tmp_path, ports, "rig.pads=[{pin: 5, sound: {file: /nope/bark.mp3}}]")


class StuckOutput(RecordingOutput):
    """A MIDI output whose close never returns until released: a port that misbehaves as the rig ends."""

    def __init__(self):
        super().__init__()
        import threading

        self.release = threading.Event()
        self.closing = threading.Event()

    def close(self):
        self.closing.set()
        self.release.wait(10)


def test_the_session_ends_before_any_port_closes(tmp_path, ports):
    import json
    import threading

    cfg = load_config(None, [f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}",
                             f"session.dir={tmp_path}"])
    output = StuckOutput()
    node = RigNode(cfg, output=output, session_dir=tmp_path / "session", record=True)
    node.timeline.start()
    node.beats.start()
    press(node, 0)
    closer = threading.Thread(target=node.close)
    closer.start()
    try:
        assert output.closing.wait(5)
        # the port is stuck closing: the session's stats and its end are already on disk
        stats = json.loads((tmp_path / "session" / "stats.json").read_text())
        assert stats["counts"]["pad_presses"] == 1
        meta = json.loads((tmp_path / "session" / "meta.json").read_text())
        assert meta.get("stopped_utc") and meta["recorded"] > 0
        assert node.devices.factory.outputs[27].level is False  # and the treat pin low
    finally:
        output.release.set()
        closer.join(10)
