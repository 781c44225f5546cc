"""CurveZMQ on the wire, over real sockets between real processes: keys, the allow-list, intruders get nothing."""

import os
import stat
import subprocess
import sys
import time

import pytest
import zmq

from bridge.config import BridgeConfig
from bridge.messages import Note, encode
from bridge.security import CurveClient, Security, create_keys, load_keys, public_key_text, security_for
from core.errors import ConfigError
from neurojam.processes import wait_brain
from recording import open_session
from tests.conftest import ROOT, run_cli

MELODY = ROOT / "configs" / "melodies" / "soldiers-joy.mid"


def test_keys_init_writes_a_private_secret_and_prints_the_public_key(tmp_path):
    r = run_cli("keys", "init", "--node", "brain", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    secret = tmp_path / "brain.key_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    key = public_key_text(tmp_path / "brain.key")
    assert len(key) == 40 and f"bridge.brain_public_key: '{key}'" in r.stdout
    again = run_cli("keys", "init", "--node", "brain", "--dir", str(tmp_path))
    assert "already exists" in again.stdout and public_key_text(tmp_path / "brain.key") == key  # never overwritten
    rig = run_cli("keys", "init", "--node", "kitchen", "--dir", str(tmp_path))
    line = next(x for x in rig.stdout.splitlines() if "bridge.identities:" in x)
    pasted = line.split("bridge.identities:")[1].split("  (")[0].strip()  # the line the owner pastes, as printed
    from neurojam.config import load_config

    rig_key = public_key_text(tmp_path / "kitchen.key")
    assert load_config(None, [f"bridge.identities={pasted}"]).bridge.identities == {rig_key: "rig:kitchen"}


def test_loopback_needs_no_keys_and_the_network_needs_them(tmp_path):
    assert type(security_for(BridgeConfig(), "rig", server=False)) is Security
    assert type(security_for(BridgeConfig(), "brain", server=True)) is Security
    with pytest.raises(ConfigError, match="neurojam keys init --node brain"):
        security_for(BridgeConfig(bind_host="0.0.0.0", keys_dir=str(tmp_path)), "brain", server=True)
    create_keys(tmp_path, "brain")
    with pytest.raises(ConfigError, match="allowed_keys is empty"):
        security_for(BridgeConfig(bind_host="0.0.0.0", keys_dir=str(tmp_path)), "brain", server=True)
    with pytest.raises(ConfigError, match="neurojam keys init --node rig"):
        security_for(BridgeConfig(host="brain.local", keys_dir=str(tmp_path)), "rig", server=False)


def test_intruders_get_nothing_and_inject_nothing_while_a_real_rig_jams(tmp_path, ports):
    keys, other = tmp_path / "keys", tmp_path / "other"
    create_keys(keys, "brain")
    create_keys(keys, "rig")
    create_keys(other, "rig")  # a key the brain never allowed
    brain_key, rig_key = public_key_text(keys / "brain.key"), public_key_text(keys / "rig.key")
    wire = ["--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}",
            "--set", "bridge.curve=on", "--set", f"bridge.brain_public_key='{brain_key}'"]
    brain = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "brain", *wire, "--set", f"bridge.keys_dir={keys}",
                              "--set", f"bridge.allowed_keys=['{rig_key}']", "--session", str(tmp_path / "brain"),
                              "--seconds", "25"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_brain(brain, ports, security=CurveClient(*load_keys(keys, "rig"), brain_key.encode()))
    ctx = zmq.Context.instance()
    thief = ctx.socket(zmq.PULL)  # no key at all, on the command port
    thief.connect(f"tcp://127.0.0.1:{ports + 1}")
    forger = ctx.socket(zmq.PUSH)  # no key, on the events port
    forger.connect(f"tcp://127.0.0.1:{ports}")
    impostor = ctx.socket(zmq.PUSH)  # a CurveZMQ client, but with a key the brain does not allow
    pub, sec = zmq.auth.load_certificate(str(other / "rig.key_secret"))
    impostor.curve_publickey, impostor.curve_secretkey, impostor.curve_serverkey = pub, sec, brain_key.encode()
    impostor.connect(f"tcp://127.0.0.1:{ports}")
    rig = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "rig", *wire, "--set", f"bridge.keys_dir={keys}",
                            "--set", "rig.sim_pet.enabled=true", "--human", str(MELODY), "--seconds", "8",
                            "--session", str(tmp_path / "rig"), "--set", f"session.dir={tmp_path}"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stolen = 0
    deadline = time.monotonic() + 9
    seq = 0
    while time.monotonic() < deadline:
        for sock, node in ((forger, "forger"), (impostor, "impostor")):
            try:
                sock.send(encode(Note(source="human", note=61, node=node, seq=seq, t=time.monotonic())), zmq.NOBLOCK)
            except zmq.Again:
                pass
        seq += 1
        if thief.poll(20):
            thief.recv()
            stolen += 1
    rig_out, _ = rig.communicate(timeout=30)
    brain.terminate()
    brain.wait(timeout=20)
    for sock in (thief, forger, impostor):
        sock.close(linger=0)
    assert rig.returncode == 0, rig_out
    assert stolen == 0  # an unauthenticated PULL on the command port received nothing
    heard = open_session(tmp_path / "brain").log
    nodes = {r.msg.node for r in heard.records if r.direction == "in"}
    assert "rig" in nodes and not nodes & {"forger", "impostor"}  # nothing injected
    jam = open_session(tmp_path / "rig").jam
    assert sum(n.source == "brain" for n in jam.notes) > 10  # the real rig got its accompaniment
    import json

    stats = json.loads((tmp_path / "brain" / "stats.json").read_text())
    assert stats["bridge"]["security"] == "curve" and stats["bridge"]["refused_keys"] >= 1  # the impostor, counted


def test_two_rigs_on_one_brain_hear_only_themselves_and_a_twin_is_refused(tmp_path, ports):
    """Real processes: a dog's rig with the human's tune and a cat's rig with pads only, one brain. Each gets
    answers to its own events only; a second 'dog' is refused on both sides and the first plays on."""
    wire = ["--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}"]
    brain = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "brain", *wire, "--seconds", "40"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_brain(brain, ports)

    def rig(name, *extra, seconds=8):
        return subprocess.Popen([sys.executable, "-m", "neurojam.cli", "rig", *wire, "--set", f"rig.node_id={name}",
                                 "--set", "rig.sim_pet.enabled=true", "--set", f"session.dir={tmp_path}",
                                 "--session", str(tmp_path / name), "--seconds", str(seconds), *extra],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    dog = rig("dog", "--human", str(MELODY))
    cat = rig("cat", "--set", "rig.sim_pet.seed=7")
    time.sleep(4)
    twin = rig("dog-twin", "--set", "rig.node_id=dog", seconds=5)
    twin_out, _ = twin.communicate(timeout=60)
    dog_out, _ = dog.communicate(timeout=60)
    cat_out, _ = cat.communicate(timeout=60)
    brain.terminate()
    brain_out, _ = brain.communicate(timeout=30)
    assert dog.returncode == 0 and cat.returncode == 0, dog_out + cat_out
    assert twin.returncode == 2 and "already connected" in twin_out, twin_out
    for name in ("dog", "cat"):
        log = open_session(tmp_path / name).log
        answers = [r.msg for r in log.records if r.direction == "in" and type(r.msg).__name__ == "Neurons"]
        assert answers and {m.event_node for m in answers} == {name}, name  # no cross-talk
    dog_words = {w for r in open_session(tmp_path / "dog").log.records if type(r.msg).__name__ == "Neurons"
                 for w in r.msg.text.split()}
    assert dog_words - {"|", "r", "C2", "D2", "C4", "E4", "G4", "C5"}  # the human's tune: not only pads
