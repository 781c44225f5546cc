"""Each doctor check, passing and failing."""

import sys

from bridge.link import Link
from neurojam.cli import doctor
from neurojam.config import load_config
from tests import fake_rpi_gpio


def cfg(*sets):
    return load_config(None, list(sets))


def test_config_check(tmp_path):
    good, config = doctor.check_config("lab", [])
    assert good.ok is True and config is not None
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("rig:\n  tempoo: 3\n")
    bad, config = doctor.check_config(str(bad_file), [])
    assert bad.ok is False and "tempo_bpm" in bad.detail and config is None


def test_gpio_check(monkeypatch):
    assert doctor.check_gpio(cfg()).ok is None  # sim: a warning, not a failure
    monkeypatch.setitem(sys.modules, "RPi", None)
    failed = doctor.check_gpio(cfg("rig.gpio.backend=rpi"))
    assert failed.ok is False and "use gpio.backend: sim" in failed.detail
    fake_rpi_gpio.reset()
    assert doctor.check_gpio(cfg("rig.gpio.backend=rpi"), gpio_module=fake_rpi_gpio).ok is True


def test_midi_check(jack_server):
    import mido

    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    port = backend.open_output("doctor-keys", virtual=True)
    try:
        jack = "rig.midi.backend=mido.backends.rtmidi/UNIX_JACK"
        assert doctor.check_midi(cfg(jack, "rig.midi.input=doctor-keys")).ok is True
        failed = doctor.check_midi(cfg(jack, "rig.midi.input=no-such-keyboard"))
        assert failed.ok is False and "no-such-keyboard" in failed.detail and "doctor-keys" in failed.detail
    finally:
        port.close()
    assert doctor.check_midi(cfg("rig.midi.backend=mido.backends.nonexistent")).ok is False


def test_with_jack_running_the_midi_check_names_the_backend_that_works(jack_server):
    """No ALSA sequencer here: the default backend fails, and the hint is the JACK key (it used to say "install
    python-rtmidi")."""
    failed = doctor.check_midi(cfg("rig.midi.backend=mido.backends.rtmidi/LINUX_ALSA"))
    assert failed.ok is False and "--set rig.midi.backend=mido.backends.rtmidi/UNIX_JACK" in failed.fix, failed.fix


def test_dispenser_check():
    assert doctor.check_dispenser(cfg()).ok is True
    shared, _ = doctor.check_config(None, ["rig.dispenser.pin=17"])  # pad 0 is on 17: the config itself refuses it
    assert shared.ok is False and "pin of its own" in shared.detail
    assert doctor.check_dispenser(cfg("rig.dispenser.enabled=false")).ok is None


def test_brain_reachable_check(ports):
    sets = (f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}")
    assert doctor.check_brain_reachable(cfg(*sets), timeout=0.5).ok is False
    brain = Link("brain", "b", events_port=ports, commands_port=ports + 1)
    import threading

    stop = threading.Event()
    t = threading.Thread(target=lambda: [brain.receive(20) for _ in iter(lambda: stop.is_set(), True)])
    t.start()
    try:
        ok = doctor.check_brain_reachable(cfg(*sets), timeout=5)
    finally:
        stop.set()
        t.join()
        brain.close()
    assert ok.ok is True and "RTT" in ok.detail and "offset" in ok.detail


def test_model_check():
    assert doctor.check_model(cfg()).ok is True
    failed = doctor.check_model(cfg("brain.model=solu-11"))
    assert failed.ok is False and "solu-1l" in failed.detail


def test_cuda_check(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert doctor.check_cuda().ok is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake GPU")
    assert doctor.check_cuda().ok is True


def test_keys_check_says_which_side_is_wrong(tmp_path):
    from bridge.security import create_keys, public_key_text

    assert doctor.check_keys(cfg(), "rig").ok is None  # loopback: off, nothing to check
    on = ("bridge.curve=true", f"bridge.keys_dir={tmp_path}")
    missing = doctor.check_keys(cfg(*on), "rig")
    assert missing.ok is False and "neurojam keys init --node rig" in missing.fix
    create_keys(tmp_path, "rig")
    create_keys(tmp_path, "brain")
    no_pin = doctor.check_keys(cfg(*on), "rig")
    assert no_pin.ok is False and "brain_public_key" in no_pin.detail
    brain_key, rig_key = public_key_text(tmp_path / "brain.key"), public_key_text(tmp_path / "rig.key")
    assert doctor.check_keys(cfg(*on, f"bridge.brain_public_key='{brain_key}'"), "rig").ok is True
    no_allow = doctor.check_keys(cfg(*on), "brain")
    assert no_allow.ok is False and "allowed_keys" in no_allow.fix
    assert doctor.check_keys(cfg(*on, f"bridge.allowed_keys=['{rig_key}']"), "brain").ok is True
    garbled, _ = doctor.check_config(None, [*on, "bridge.allowed_keys=['not-a-key']"])  # refused at load now
    assert garbled.ok is False and "40 characters" in garbled.detail
