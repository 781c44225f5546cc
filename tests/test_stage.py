"""The stage: the brain's feed over real sockets, and the page in real headless Chromium during a real demo."""

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bridge.link import Link
from bridge.messages import (
    Accomp,
    BrainStatus,
    CardRequest,
    Monitor,
    NeuronCard,
    Neurons,
    Note,
    Tempo,
    TreatRequest,
    decode,
    encode,
)
from stage.jam_view import JamView
from neurojam.processes import free_port
from tests.conftest import ROOT, run_cli
from tests.test_brain_node import collect, play, start_brain



def test_brain_feeds_a_stage_copies_status_cards_and_passes_on_its_controls(ports):
    brain = start_brain(ports)
    rig = Link("rig", "rig-a", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1)
    stage = Link("stage", "stage", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1)
    tool = Link("tool", "tool", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1)
    try:
        collect(rig, 3, until=lambda g: bool(g))
        play(rig, time.monotonic(), beats=12)
        seen = collect(stage, 8, until=lambda g: any(isinstance(m, BrainStatus) and m.rigs for m in g)
                       and sum(isinstance(m, Monitor) and m.direction == "out" for m in g) > 10)
        to_rig = collect(rig, 1)
        stage.send(CardRequest(layer=1, neuron=5))
        stage.send(CardRequest(layer=1, neuron=99999))
        stage.send(TreatRequest(source="manual", rig="rig-a", why="button"))
        stage.send(TreatRequest(source="brain", rig="nobody"))
        stage.send(Tempo(bpm=96, rig="rig-a"))
        cards = collect(stage, 5, until=lambda g: sum(isinstance(m, NeuronCard) for m in g) >= 2)
        to_rig += collect(rig, 2, until=lambda g: any(isinstance(m, Tempo) for m in g))
        tool_got = collect(tool, 1)
    finally:
        for link in (rig, stage, tool):
            link.close()
        brain.terminate()
        brain.wait(timeout=15)
    copies = [(m.direction, decode(m.frame)) for m in seen if isinstance(m, Monitor)]
    assert {m.rig for m in seen if isinstance(m, Monitor)} == {"rig-a"}
    assert any(d == "in" and isinstance(x, Note) and x.source == "human" for d, x in copies)
    assert any(d == "out" and isinstance(x, Neurons) for d, x in copies)
    assert any(d == "out" and isinstance(x, Accomp) for d, x in copies)
    status = [m for m in seen if isinstance(m, BrainStatus) and m.rigs][-1]
    assert status.rigs[0].node == "rig-a" and status.rigs[0].events > 0 and status.model == "notes-default"
    assert status.rigs[0].alive and status.rigs[0].rtt_ms is not None
    good, bad = sorted([m for m in cards if isinstance(m, NeuronCard)], key=lambda c: c.neuron)
    assert good.neuron == 5 and not good.error and good.label and len(good.promotes) == 5 and good.corpus
    assert "99999" in bad.error and not bad.promotes
    treats = [m for m in to_rig if isinstance(m, TreatRequest) and m.source == "manual"]
    assert len(treats) == 1  # the one for rig-a; the one for a rig that is not playing went nowhere
    assert [m.bpm for m in to_rig if isinstance(m, Tempo)] == [96]
    assert not any(isinstance(m, (Monitor, BrainStatus)) for m in tool_got)  # only stages get copies


def test_jam_view_maps_rig_time_and_survives_a_corrupt_copy():
    from bridge.messages import AccompNote, Beat, RigHealth

    view = JamView(clock=lambda: 100.0)
    view.read(BrainStatus(rigs=[RigHealth(node="r", clock_offset_s=5.0)], stage_clock_offset_s=-1.0))
    beat = encode(Beat(index=8, bar=2, beat=0, tempo_bpm=120, time=105.0, node="r", seq=1, t=105.0))
    [b] = view.read(Monitor(rig="r", direction="in", frame=beat))
    assert b["t"] == pytest.approx(99.0)  # rig 105 → brain 100 → stage 99
    note = encode(Note(source="human", note=62, node="r", seq=2, t=105.5))
    [n] = view.read(Monitor(rig="r", direction="in", frame=note))
    assert n["event_t"] == pytest.approx(99.5) and n["name"] == "D4"
    accomp = encode(Accomp(notes=[AccompNote(note=50, due_beat=9.0, duration=0.5)], event_seq=2, node="brain"))
    [a] = view.read(Monitor(rig="r", direction="out", frame=accomp))
    assert a["t"] == pytest.approx(99.5) and a["event_t"] == pytest.approx(99.5)  # beat 9 = 105.5 on the rig
    assert view.read(Monitor(rig="r", direction="in", frame=b"\x93garbage")) == []
    assert view.bad_frames == 1
    assert [e["type"] for e in view.snapshot()] == ["status", "beat", "note", "note"]


def http(url: str, data: dict | None = None) -> int:
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def start_stage(ports: int, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "stage", "--port", str(port),
                             "--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}",
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc


def read_until(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and text not in seen:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert text in seen, seen
    return seen


def test_a_lan_stage_needs_its_token_for_the_page_and_every_control(ports):
    port = free_port()
    proc = start_stage(ports, port, "--host", "0.0.0.0")
    try:
        out = read_until(proc, "open http")
        token = out.split("token=")[1].split()[0]
        base = f"http://127.0.0.1:{port}"
        assert http(f"{base}/") == 403
        assert http(f"{base}/?token=wrong") == 403
        assert http(f"{base}/ws") == 403
        for control in ("steer", "treat", "tempo", "card"):
            assert http(f"{base}/api/{control}", {"neuron": "0.1", "factor": 0, "bpm": 100}) == 403
        assert http(f"{base}/?token={token}") == 200
        assert http(f"{base}/api/treat?token={token}", {}) == 503  # allowed; no brain to send it to
        assert http(f"{base}/api/steer?token={token}", {"neuron": "0.1", "factor": 7}) == 400  # outside 0-3x
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def jam_page(tmp_path_factory):
    """A stage started before any brain; then a demo (brain + simulated rig); the page open in Chromium."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the Debian chromium package is needed (.ci/run installs it)"
    from neurojam.processes import free_port_pair

    ports, port = free_port_pair(), free_port()
    stage = start_stage(ports, port)
    terminal = read_until(stage, "open http")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 820})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("window.stage && window.stage.link.message.length > 0", timeout=10_000)
        before = {"terminal": terminal, "link": page.evaluate("stage.link"),
                  "pill": page.locator("#link").inner_text()}
        demo = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "demo", "--seconds", "100", "--no-view",
                                 "--out", str(tmp_path_factory.mktemp("demo")),
                                 "--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            page.wait_for_function("stage.link.alive && stage.neurons.length > 5", timeout=90_000)
            yield page, before, stage, errors
        finally:
            browser.close()
            demo.terminate()
            demo.wait(timeout=30)
            stage.terminate()
            stage.wait(timeout=10)


def test_without_a_brain_the_page_and_terminal_say_so_then_it_connects(jam_page):
    page, before, _, _ = jam_page
    assert "no brain at" in before["terminal"]
    assert before["link"]["alive"] is False and "no brain at" in before["pill"]
    assert page.evaluate("stage.link.alive") is True
    assert page.locator("#link").inner_text() == "brain connected"


def test_the_piano_roll_gains_notes_while_the_demo_plays(jam_page):
    page, _, _, errors = jam_page
    count = "stage.notes.filter(n => n.t > serverNow() - 30).length"
    first = page.evaluate(count)
    page.wait_for_function(f"{count} > {first} + 5", timeout=15_000)
    counts = page.evaluate("stage.counts")
    assert counts["human"] > 0 and counts["brain"] > 0
    drawn = page.evaluate("""(() => { const c = document.getElementById('roll');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let lit = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 200) lit++; return lit; })()""")
    assert drawn > 500  # notes are on the canvas, not only in memory
    lat = page.evaluate("stage.latency.neurons")
    assert len(lat) > 5 and all(x > 0 for x in lat)  # painted after the event left the rig
    assert errors == []


def test_a_slider_at_zero_silences_that_neuron_in_the_next_neurons(jam_page):
    page, _, _, _ = jam_page
    page.wait_for_selector("#neurons input[data-neuron]", timeout=10_000)
    replies = page.evaluate("stage.steerReplies.length")
    # move the first slider to 0 as a hand would (input, then change on release), in one step: the list
    # re-sorts itself twice a second, so a slider found in one call may be gone in the next
    neuron = page.evaluate("""(() => { const el = document.querySelector('#neurons input[data-neuron]');
        el.focus(); el.value = '0'; el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true})); return el.dataset.neuron; })()""")
    seen_before = page.evaluate(f"stage.neurons.some(e => e.hits.some(h => h.id === '{neuron}' && h.act !== 0))")
    page.wait_for_function(f"stage.steerReplies.slice({replies}).some(r => r.applied && r.id === '{neuron}' "
                           f"&& r.factor === 0)", timeout=10_000)
    mark = page.evaluate("stage.neurons.length")
    page.wait_for_function(f"stage.neurons.length >= {mark} + 8", timeout=20_000)
    after = page.evaluate(f"stage.neurons.slice({mark} + 2).flatMap(e => e.hits).filter(h => h.id === '{neuron}')")
    assert seen_before
    assert all(h["act"] == 0 for h in after), after  # silenced: never among the top firing again
    page.wait_for_function(f"(stage.status.rigs[0].steering['{neuron}'] ?? 1) === 0", timeout=5_000)
    page.click("#clear")
    page.wait_for_function("stage.steerReplies.some(r => r.applied && r.clear)", timeout=10_000)


def test_the_treat_button_goes_through_the_rigs_dispenser_and_shows_its_answer(jam_page):
    page, _, _, _ = jam_page
    page.click("#treat")
    page.wait_for_function("stage.treats.some(t => t.source === 'manual')", timeout=15_000)
    treat = page.evaluate("stage.treats.find(t => t.source === 'manual')")
    shown = page.locator("#treats").inner_text()
    if treat["outcome"] == "dispensed":
        assert "dispensed (manual)" in shown
    else:  # the caps said no: the page says which
        assert treat["refusal"] and f"refused: {treat['refusal']}" in shown


def test_a_neuron_card_is_a_click_away(jam_page):
    page, _, _, _ = jam_page
    page.wait_for_selector("#neurons .id", timeout=10_000)
    neuron = page.evaluate("(() => { const el = document.querySelector('#neurons .id'); el.click(); "
                           "return el.dataset.card; })()")
    page.wait_for_function(f"stage.card && stage.card.id === '{neuron}'", timeout=10_000)
    assert page.locator("#card").is_visible()
    body = page.locator("#card-body").inner_text().lower()
    assert f"neuron {neuron}" in body and "promotes" in body and "calibration corpus" in body


def test_skipping_a_layer_from_the_page_silences_its_neurons_until_clear(jam_page):
    """The stage's "skip layer" menu → a steer to the brain → that layer's neurons never among the top again, the
    page says which layers run; "clear steering" brings them back."""
    page, _, _, errors = jam_page
    page.wait_for_function("document.querySelectorAll('#skip option').length === stage.status.n_layers + 1",
                           timeout=10_000)
    heard = "stage.neurons.slice(-40).flatMap(e => e.hits).filter(h => h.id.startsWith('0.')).length"
    assert page.evaluate(heard) > 0  # layer 0 is heard before: the check below can fail
    page.select_option("#skip", "0")
    page.wait_for_function("stage.steerReplies.some(r => r.applied && r.skip_layer && r.id.startsWith('0.'))",
                           timeout=10_000)
    page.wait_for_function("stage.status.rigs[0].corruption === 'skip=0'", timeout=5_000)
    assert page.locator("#corruption").inner_text() == "layers: skip=0"
    mark = page.evaluate("stage.neurons.length")
    page.wait_for_function(f"stage.neurons.length >= {mark} + 8", timeout=20_000)
    after = page.evaluate(f"stage.neurons.slice({mark} + 2).flatMap(e => e.hits).map(h => h.id)")
    assert after and not [h for h in after if h.startswith("0.")], after
    page.click("#clear")
    page.wait_for_function("stage.status.rigs[0].corruption === ''", timeout=10_000)
    assert not page.locator("#corruption").is_visible()
    assert errors == []


def test_the_neuron_list_holds_still_under_the_pointer_and_catches_up_after(jam_page):
    """A click aimed at one neuron used to open another's card: the list redrew ~22 times a second. Now it
    reorders at most every 1.5 s, by a slowly decaying score, and never while the pointer is over it."""
    page, _, _, _ = jam_page
    page.wait_for_function("document.querySelectorAll('#neurons [data-card]').length >= 3", timeout=30_000)
    rows = "[...document.querySelectorAll('#neurons [data-card]')].map(e => e.dataset.card)"
    page.hover("#neurons .neuron .label")
    held = page.evaluate(rows)
    page.evaluate("onNeurons({t: serverNow(), hits: [{id: '9.999', norm: 50, label: 'a planted neuron'}]})")
    assert page.evaluate("shownNeurons()")[0] == "9.999"  # the ranking moved: the list would reorder
    for _ in range(12):
        page.wait_for_timeout(250)
        assert page.evaluate(rows) == held  # ...but not under the pointer
    page.mouse.move(3, 3)
    page.wait_for_function(f"{rows}.includes('9.999')", timeout=5_000)


def test_the_units_toggle_plays_features_with_their_cards_and_steering_then_neurons_again(jam_page):
    """The stage's units menu → the brain plays its dictionary's features: the page says so (with how far their
    labels are earned beside the control's), a feature's card shows both sides of its label, a slider at 0 silences
    that feature; back to neurons after."""
    page, _, _, errors = jam_page
    page.select_option("#units", "features")
    page.wait_for_function("stage.steerReplies.some(r => r.applied && r.play === 'features')", timeout=30_000)
    page.wait_for_function("stage.status.units === 'features'", timeout=5_000)
    mark = page.evaluate("stage.neurons.length")
    page.wait_for_function(f"stage.neurons.slice({mark}).filter(e => e.units === 'features').length >= 4",
                           timeout=20_000)
    assert "features" in page.locator("aside h2").first.inner_text().lower()
    assert "shuffled-weight model" in page.locator("#labels-line").inner_text()
    page.wait_for_selector("#neurons .id", timeout=10_000)
    feature = page.evaluate("(() => { const el = document.querySelector('#neurons .id'); el.click(); "
                            "return el.dataset.card; })()")
    page.wait_for_function(f"stage.card && stage.card.id === '{feature}' && stage.card.units === 'features'",
                           timeout=10_000)
    body = page.locator("#card-body").inner_text().lower()
    assert f"feature {feature}" in body and "expects" in body and "held-out firings" in body, body
    page.click("#card-close")
    replies = page.evaluate("stage.steerReplies.length")
    steered = page.evaluate("""(() => { const el = document.querySelector('#neurons input[data-neuron]');
        el.focus(); el.value = '0'; el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true})); return el.dataset.neuron; })()""")
    page.wait_for_function(f"stage.steerReplies.slice({replies}).some(r => r.applied && r.id === '{steered}' "
                           f"&& r.units === 'features' && r.factor === 0)", timeout=10_000)
    mark = page.evaluate("stage.neurons.length")
    page.wait_for_function(f"stage.neurons.length >= {mark} + 8", timeout=20_000)
    after = page.evaluate(f"stage.neurons.slice({mark} + 2).flatMap(e => e.hits).filter(h => h.id === '{steered}')")
    assert all(h["act"] == 0 for h in after), after
    page.select_option("#units", "neurons")
    page.wait_for_function("stage.status.units === 'neurons'", timeout=30_000)
    mark = page.evaluate("stage.neurons.length")
    page.wait_for_function(f"stage.neurons.slice({mark}).some(e => e.units === 'neurons')", timeout=20_000)
    assert page.locator("#labels-line").inner_text() == ""
    assert errors == []


def test_a_second_stage_command_finds_the_running_one(tmp_path, monkeypatch):
    """`neurojam stage` while a demo serves its stage prints that stage's address (it used to fail on the port)."""
    import argparse
    import os

    from neurojam.cli.stage import running_stage
    from neurojam.runtime import Running

    monkeypatch.setenv("NEUROJAM_RUNTIME_DIR", str(tmp_path))
    url = "http://127.0.0.1:8771/?token=s3cret"
    Running(pid=os.getpid(), kind="demo", events_port=5555, commands_port=5556, stage_url=url).write()
    r = run_cli("stage", env={"NEUROJAM_RUNTIME_DIR": str(tmp_path)}, timeout=60)
    assert r.returncode == 0 and url in r.stdout and "already serves" in r.stdout, r.stdout + r.stderr
    asked = lambda **kw: argparse.Namespace(**{"host": None, "port": None, **kw})  # noqa: E731
    assert running_stage(asked(port=8771)) is not None
    assert running_stage(asked(port=9000)) is None and running_stage(asked(host="0.0.0.0")) is None  # another one
    Running(pid=os.getpid(), kind="demo", events_port=5555, commands_port=5556).write()  # a demo without a stage
    assert running_stage(asked()) is None
