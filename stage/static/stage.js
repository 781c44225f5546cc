// neurojam stage: the jam live. Events arrive on a WebSocket (stage/jam_view.py says what each is); times are on
// the stage server's clock, mapped to performance.now() by a ping exchange (min-RTT sample, like the rig's clock).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const WINDOW_S = 8;          // seconds of piano roll shown; "now" sits at 75 % of the width (brain notes ahead)
const HEAT_BEATS = 32;       // beats in the heat strip (8 bars of 4)
const COLORS = { pet: "#ffc933", human: "#3fd0ff", brain: "#ff5fd2", marker: "#ffffff", metronome: "#666" };
const SCORE_TAU_S = 4;       // a neuron's place in the list: its activations, decaying with this time constant
const LIST_EVERY_MS = 1500;  // the list reorders at most this often, and never while the pointer is over it
const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];  // as the brain spells notes
const DROP_WORDS = { peer_absent: "sent with no peer connected", peer_gone: "sent to a peer that had left",
  queue_full: "queue full", no_route: "no route yet", socket_error: "socket error", identity_mismatch: "wrong identity",
  not_your_rig: "not that sender's rig", oversized: "frame too large", too_many_rigs: "too many rigs",
  too_many_stages: "too many stages", new_id_rate: "too many new names" };

// Everything the page knows, readable by tests and bench/stage.py.
const stage = window.stage = {
  link: { alive: false, message: "" }, status: null, rig: "", rigs: new Set(),
  notes: [], counts: { pet: 0, human: 0, brain: 0, marker: 0 }, beats: [], neurons: [], treats: [],
  neuronInfo: new Map(),     // id -> {label, lastNorm, lastSeen, heat: Map(beatIndex -> norm)}
  latency: { note: [], neurons: [] }, unpainted: [], card: null, steerReplies: [],
  clock: { offset: null, rtt: Infinity }, frames: 0, live: false, shown: [], range: [48, 84],
};

// -- clock: server seconds = performance.now()/1000 + offset --------------------------------------------------
function serverNow() { return performance.now() / 1000 + (stage.clock.offset ?? 0); }
function onSync(e) {
  const now = performance.now(), rtt = now - e.p;
  if (rtt <= stage.clock.rtt * 1.5 || stage.clock.offset === null) {
    stage.clock.rtt = Math.min(rtt, stage.clock.rtt * 1.5);
    stage.clock.offset = e.s - (e.p + now) / 2000;
  }
}

// -- the wire ----------------------------------------------------------------------------------------------
let ws = null;
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(TOKEN)}`);
  ws.onopen = () => { sync(); if (stage.rig) watch(); };
  let first = true;  // the first batch is the recent history: drawn, but not timed as live
  ws.onmessage = (m) => { stage.live = !first; first = false; for (const e of JSON.parse(m.data)) receive(e); };
  ws.onclose = () => { setLink(false, "the stage server stopped; retrying…"); setTimeout(connect, 1000); };
}
function sync() { if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "sync", p: performance.now() })); }
setInterval(sync, 2000);
for (const d of [200, 400, 800]) setTimeout(sync, d);

async function control(name, body) {
  const r = await fetch(`api/${name}`, { method: "POST", body: JSON.stringify({ rig: stage.rig, ...body }),
    headers: { "Content-Type": "application/json", "X-Neurojam-Token": TOKEN } });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) flash(answer.error || `${name}: HTTP ${r.status}`);
  return answer;
}

function receive(e) {
  switch (e.type) {
    case "sync": return onSync(e);
    case "link": return setLink(e.alive, e.message);
    case "status": return onStatus(e);
    case "card": return showCard(e);
    case "steer_reply": stage.steerReplies.push(e); trim(stage.steerReplies, 100); if (!e.applied) flash(e.reason); return;
  }
  if (e.rig && !stage.rigs.has(e.rig)) addRig(e.rig);
  if (e.rig !== stage.rig) return;
  if (e.type === "beat") { stage.beats.push(e); trim(stage.beats, 64); document.getElementById("bpm").textContent = `${Math.round(e.bpm)} BPM`;
    document.getElementById("bar").textContent = `bar ${e.bar + 1} · beat ${e.beat + 1}`; }
  else if (e.type === "note") { e.end = e.t + (e.duration || 0.35); stage.notes.push(e); trim(stage.notes, 600);
    stage.counts[e.source] = (stage.counts[e.source] || 0) + 1; if (e.event_t != null && stage.live) stage.unpainted.push(["note", e.event_t]); }
  else if (e.type === "off") { const n = [...stage.notes].reverse().find(x => x.source === e.source && x.note === e.note && x.t <= e.t);
    if (n && !n.duration) n.end = Math.max(n.t + 0.05, e.t); }
  else if (e.type === "neurons") onNeurons(e);
  else if (e.type === "treat") { stage.treats.push(e); trim(stage.treats, 50); renderTreats(); }
}
function trim(list, n) { if (list.length > n) list.splice(0, list.length - n); }
function setLink(alive, message) {
  stage.link = { alive, message };
  const el = document.getElementById("link");
  el.textContent = alive ? "brain connected" : message; el.className = `pill ${alive ? "ok" : "bad"}`; el.title = message;
}
function addRig(name) {
  stage.rigs.add(name);
  const sel = document.getElementById("rig"), opt = document.createElement("option");
  opt.value = opt.textContent = name; sel.appendChild(opt);
  if (!stage.rig) { stage.rig = name; sel.value = name; watch(); }
}
function watch() { if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "watch", rig: stage.rig })); }
document.getElementById("rig").onchange = (ev) => {
  stage.rig = ev.target.value; stage.notes = []; stage.beats = []; stage.neuronInfo.clear(); renderNeurons(true); watch();
};

// -- neurons ------------------------------------------------------------------------------------------------
function beatAt(t) {
  const b = stage.beats[stage.beats.length - 1];
  return b ? Math.floor(b.index + (t - b.t) * b.bpm / 60) : 0;
}
function onNeurons(e) {
  stage.neurons.push(e); trim(stage.neurons, 300);
  const t = e.event_t ?? e.t, beat = beatAt(t);
  for (const h of e.hits) {
    let info = stage.neuronInfo.get(h.id);
    if (!info) stage.neuronInfo.set(h.id, info = { label: h.label, heat: new Map(), lastNorm: 0, lastSeen: 0, score: 0 });
    info.score = scoreAt(info, t) + h.norm;
    info.lastNorm = h.norm; info.lastSeen = t; info.label = h.label || info.label;
    info.heat.set(beat, Math.max(info.heat.get(beat) || 0, h.norm));
    for (const b of info.heat.keys()) if (b < beat - HEAT_BEATS) info.heat.delete(b);  // a long jam stays small
  }
  if (stage.neuronInfo.size > 64) {  // forget neurons not heard for a minute
    for (const [id, i] of stage.neuronInfo) if (t - i.lastSeen > 60) stage.neuronInfo.delete(id);
  }
  if (e.event_t != null && stage.live) stage.unpainted.push(["neurons", e.event_t]);
}
function steering() {
  const rig = stage.status?.rigs.find(r => r.node === stage.rig);
  return rig ? rig.steering : {};
}
function scoreAt(info, t) { return info.score * Math.exp(-Math.max(0, t - info.lastSeen) / SCORE_TAU_S); }
function shownNeurons() {
  const now = serverNow(), steer = steering();
  const recent = [...stage.neuronInfo.entries()].filter(([, i]) => now - i.lastSeen < 20)
    .sort((a, b) => scoreAt(b[1], now) - scoreAt(a[1], now)).slice(0, 8).map(([id]) => id);
  for (const id of Object.keys(steer)) if (!recent.includes(id)) recent.push(id);
  return recent;
}
let lastList = "", lastOrderAt = -Infinity;
function listHeld() {  // the pointer over the list, or a slider in a hand: rows stay where they are
  return document.getElementById("neurons").matches(":hover") || document.activeElement?.matches?.("input[type=range]");
}
function updateMeters() {
  const box = document.getElementById("neurons"), now = serverNow();
  for (const m of box.querySelectorAll("[data-meter]")) {
    const i = stage.neuronInfo.get(m.dataset.meter);
    if (i) m.style.width = `${Math.min(100, 70 * (now - i.lastSeen < 1 ? i.lastNorm : 0))}%`;
  }
}
function renderNeurons(force) {
  const box = document.getElementById("neurons");
  if (!force && (listHeld() || performance.now() - lastOrderAt < LIST_EVERY_MS)) return updateMeters();
  const ids = shownNeurons(), steer = steering(), key = ids.join(",") + JSON.stringify(steer);
  if (!force && key === lastList) return updateMeters();
  lastList = key; lastOrderAt = performance.now();
  stage.shown = ids;
  box.innerHTML = "";
  for (const id of ids) {
    const info = stage.neuronInfo.get(id) || { label: "", lastNorm: 0 }, factor = steer[id] ?? 1;
    const row = document.createElement("div");
    row.className = "neuron" + (id in steer ? " steered" : "");
    row.innerHTML = `<span class="id" data-card="${id}">${id}</span>
      <span><div class="label" title="${esc(info.label)}">${esc(shortLabel(info.label)) || "no label yet"}</div>
      <div class="meter" data-meter="${id}" style="width:${Math.min(100, 70 * info.lastNorm)}%"></div></span>
      <input type="range" min="0" max="3" step="0.1" value="${factor}" data-neuron="${id}" aria-label="steer ${id}">
      <span class="factor">${Number(factor).toFixed(1)}×</span>`;
    box.appendChild(row);
  }
  if (!ids.length) box.innerHTML = `<p class="muted">${stage.link.alive ? "waiting for the first notes…" : "no brain yet"}</p>`;
}
document.getElementById("neurons").addEventListener("input", (ev) => {
  if (ev.target.dataset.neuron) ev.target.nextElementSibling.textContent = `${Number(ev.target.value).toFixed(1)}×`;
});
document.getElementById("neurons").addEventListener("change", (ev) => {
  const id = ev.target.dataset.neuron;
  if (id) { control("steer", { neuron: id, factor: Number(ev.target.value), units: stage.status?.units || "" }); ev.target.blur(); }
});
document.getElementById("neurons").addEventListener("click", (ev) => {
  const id = ev.target.dataset.card;
  if (id) control("card", { neuron: id });
});
document.getElementById("clear").onclick = () => control("steer", { clear: true });
document.getElementById("units").addEventListener("change", (ev) => {
  control("steer", { play: ev.target.value });
  stage.neuronInfo.clear(); renderNeurons(true);  // a feature's id is not a neuron's
});
function renderUnits(s) {
  const units = s.units || "neurons", sel = document.getElementById("units");
  if (document.activeElement !== sel) sel.value = units;
  if (stage.units && stage.units !== units) { stage.neuronInfo.clear(); renderNeurons(true); }
  stage.units = units;
  for (const el of document.querySelectorAll(".units-word")) el.textContent = units;
  document.getElementById("labels-line").textContent = s.labels || "";
}
document.getElementById("treat").onclick = () => control("treat", {});
function tempo(delta) {
  const b = stage.beats[stage.beats.length - 1];
  if (b) control("tempo", { bpm: Math.max(40, Math.min(240, Math.round(b.bpm) + delta)) });
}
document.getElementById("slower").onclick = () => tempo(-4);
document.getElementById("faster").onclick = () => tempo(4);

// -- panels -------------------------------------------------------------------------------------------------
function shortLabel(label) {  // the full label is the tooltip; the row keeps what fits
  return String(label ?? "").replace(/^no clear trait \(best: (.*?), AUROC ([\d.]+)\)/, "unclear: $1? ($2)")
    .replace(/^position neuron: position < \d+ \(start of the window\)/, "position: start of window")
    .replace(/^position neuron: position ≥ \d+ \(late in the window\)/, "position: late in window")
    .replace(/, AUROC ([\d.]+)/, " ($1)")
    .replace(/^fires on many things \(best: (.*?), (\d+%) of \d+ (held-out )?firings\)/, "many things (best: $1 $2)")
    .replace(/ \((\d+%) of \d+ held-out firings\)/, " ($1)")
    .replace(/ · true now$/, " ✓ now").replace(/ · not now$/, " · not now");
}
function esc(s) { return String(s ?? "").replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
function renderTreats() {
  const ol = document.getElementById("treats");
  ol.innerHTML = stage.treats.slice(-8).reverse().map(t => t.outcome === "dispensed"
    ? `<li class="dispensed">dispensed (${esc(t.source)})</li>`
    : `<li class="refused">refused: ${esc(t.refusal)}${t.detail ? " – " + esc(t.detail) : ""} (${esc(t.source)})</li>`).join("");
}
function renderLayers(s) {
  const skip = document.getElementById("skip");
  if (skip.options.length !== s.n_layers + 1) {
    skip.innerHTML = `<option value="">–</option>` +
      Array.from({ length: s.n_layers }, (_, i) => `<option value="${i}">layer ${i}</option>`).join("");
  }
  const rig = s.rigs.find(r => r.node === stage.rig), what = rig ? rig.corruption : "";
  const pill = document.getElementById("corruption");
  pill.textContent = what ? `layers: ${what}` : "";
  pill.classList.toggle("hidden", !what);
}
document.getElementById("skip").addEventListener("change", (ev) => {
  if (ev.target.value !== "") control("steer", { skip_layer: Number(ev.target.value) });
  ev.target.value = "";
});
function onStatus(s) {
  stage.status = s;
  for (const r of s.rigs) if (!stage.rigs.has(r.node)) addRig(r.node);
  renderLayers(s);
  renderUnits(s);
  const ms = (v) => v == null ? "–" : Number(v).toFixed(1);
  document.getElementById("model").textContent = `${s.model} on ${s.device} · the model's step: ${ms(s.step_ms_p50)} ms typical, ${ms(s.step_ms_p99)} ms slowest 1 %`;
  const drops = (d) => Object.entries(d).map(([k, v]) => `${v} ${DROP_WORDS[k] || k.replaceAll("_", " ")}`).join(", ") || "none";
  const lat = stage.latency.neurons.slice(-200).sort((a, b) => a - b);
  document.getElementById("health").innerHTML =
    `<tr><th>rig</th><th>alive</th><th>rtt ms</th><th>offset ms</th><th>lost</th><th>events</th></tr>` +
    s.rigs.map(r => `<tr><td>${esc(r.node)}</td><td>${r.alive ? "yes" : "<b>no</b>"}</td><td>${r.rtt_ms ?? "–"}</td>
      <td>${r.clock_offset_ms ?? "–"}</td><td>${r.lost_in_gaps}</td><td>${r.events}</td></tr>`).join("") +
    `<tr><td colspan="6">messages the brain dropped: arriving ${esc(drops(s.dropped_in))}; leaving ${esc(drops(s.dropped_out))}</td></tr>` +
    `<tr><td colspan="6">event → painted here: p50 ${lat.length ? lat[lat.length >> 1].toFixed(1) : "–"} ms</td></tr>`;
  renderNeurons(false);
}
function flash(text) { const el = document.getElementById("model"); el.textContent = text; el.style.color = "#ff5d5d";
  setTimeout(() => { el.style.color = ""; }, 3000); }
function showCard(c) {
  stage.card = c;
  const ex = (list) => list.map(e => {
    const top = Math.max(...e.acts.map(Math.abs), 1e-6);
    return `<div class="example">${e.words.map((w, i) => `<span style="background:rgba(255,95,210,${Math.max(0, e.acts[i] / top) * 0.8})">${esc(w)}</span>`).join("")}</div>`;
  }).join("") || `<p class="muted">none yet</p>`;
  document.getElementById("card-body").innerHTML = c.error ? `<p>${esc(c.error)}</p>` :
    `<h2>${c.units === "features" ? "feature" : "neuron"} ${c.id}</h2><p><b>${esc(c.label) || "no label"}</b></p>
     ${c.expects ? `<p>${esc(c.expects)}</p><p class="muted">${esc(stage.status?.labels || "")}</p>` : ""}
     <p>promotes (direct logit effect): ${c.promotes.map(esc).join(", ") || "–"}</p>
     ${c.units === "features" && !c.corpus.length ? "" : `<h2>fires hardest in the calibration corpus</h2>${ex(c.corpus)}`}
     <h2>fired hardest in this session</h2>${ex(c.session)}`;
  document.getElementById("card").classList.remove("hidden");
}
document.getElementById("card-close").onclick = () => document.getElementById("card").classList.add("hidden");

// -- drawing ------------------------------------------------------------------------------------------------
function px(size) { return window.innerWidth >= 1600 ? Math.round(size * 1.35) : size; }  // a projector's type
function fit(canvas) {
  const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(r.width * dpr) || canvas.height !== Math.round(r.height * dpr)) {
    canvas.width = Math.round(r.width * dpr); canvas.height = Math.round(r.height * dpr);
  }
  const ctx = canvas.getContext("2d"); ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, r.width, r.height];
}
function drawRoll(now) {
  const [ctx, w, h] = fit(document.getElementById("roll"));
  ctx.clearRect(0, 0, w, h);
  const x = (t) => w * 0.75 + (t - now) * (w / WINDOW_S);
  const visible = stage.notes.filter(n => n.t > now - WINDOW_S && n.t < now + WINDOW_S / 3).map(n => n.note);
  if (visible.length) {  // follow the music's range, smoothly, at least two octaves
    const want = [Math.min(...visible) - 2, Math.max(...visible) + 2], r = stage.range;
    r[0] += (Math.min(want[0], (want[0] + want[1]) / 2 - 12) - r[0]) * 0.05;
    r[1] += (Math.max(want[1], (want[0] + want[1]) / 2 + 12) - r[1]) * 0.05;
  }
  const [lo, hi] = stage.range, labelW = 30, row = (h - 24) / (hi - lo);
  const y = (n) => 20 + (hi - n) * row;
  ctx.font = `${px(11)}px system-ui`;
  for (let c = Math.ceil(lo / 12) * 12; c <= hi; c += 12) {  // the Cs, for orientation
    ctx.fillStyle = "#1a1d27"; ctx.fillRect(labelW, y(c), w, 1);
    ctx.fillStyle = "#8a8fa3"; ctx.fillText(`${NOTE_NAMES[0]}${c / 12 - 1}`, 4, y(c) + 4);
  }
  ctx.fillStyle = "#8a8fa3"; ctx.textAlign = "center";  // a time axis: seconds from now
  for (let s = -Math.floor(WINDOW_S * 0.75); s <= WINDOW_S / 4; s++) {
    const tx = x(now + s);  // whole labels only: none under the note names or past the right edge
    if (s !== 0 && tx > labelW + 20 && tx < w - 20) ctx.fillText(`${s > 0 ? "+" : ""}${s} s`, tx, h - 4);
  }
  ctx.textAlign = "left";
  for (const b of stage.beats) {
    const bx = x(b.t); if (bx < 0 || bx > w) continue;
    ctx.fillStyle = b.beat === 0 ? "#3a3f50" : "#1f2330"; ctx.fillRect(bx, 0, b.beat === 0 ? 2 : 1, h);
  }
  const layerOf = (source) => source === "human" ? 2 : source === "pet" ? 1 : 0;
  for (const layer of [0, 1, 2]) {  // the human on top: the part everyone follows stays visible
    for (const n of stage.notes) {
      if (layerOf(n.source) !== layer) continue;
      const x0 = x(n.t), x1 = x(n.end ?? n.t + 0.3); if (x1 < 0 || x0 > w) continue;
      ctx.fillStyle = COLORS[n.source] || "#aaa"; ctx.globalAlpha = 0.35 + 0.65 * (n.velocity ?? 100) / 127;
      const hgt = Math.max(3, row), top = y(n.note) - row * 0.5;
      if (n.source === "brain") { ctx.fillRect(x0, top + hgt * 0.25, Math.max(3, x1 - x0), hgt * 0.5); continue; }
      ctx.fillRect(x0, top, Math.max(3, x1 - x0), hgt);
      if (n.source === "human") { ctx.globalAlpha = 1; ctx.strokeStyle = "#ffffff"; ctx.strokeRect(x0, top, Math.max(3, x1 - x0), hgt); }
    }
  }
  ctx.globalAlpha = 1;
  for (const t of stage.treats) {
    const tx = x(t.t); if (tx < 0 || tx > w) continue;
    ctx.fillStyle = t.outcome === "dispensed" ? "#3ddc84" : "#ff5d5d"; ctx.font = `${px(13)}px system-ui`;
    ctx.fillText(t.outcome === "dispensed" ? "● treat" : `✕ ${t.refusal}`, tx + 3, 14);
  }
  ctx.fillStyle = "#ffffffaa"; ctx.fillRect(w * 0.75, 0, 2, h);
  ctx.font = `${px(12)}px system-ui`; ctx.fillText("now", w * 0.75 + 4, 14);
}
function drawHeat() {
  const [ctx, w, h] = fit(document.getElementById("heat"));
  ctx.clearRect(0, 0, w, h);
  const ids = stage.shown || [], last = beatAt(serverNow()), labelW = 70, cw = (w - labelW) / HEAT_BEATS;
  const rh = Math.min(26, h / Math.max(ids.length, 1));
  ctx.font = `${px(12)}px system-ui`;
  ids.forEach((id, r) => {
    const info = stage.neuronInfo.get(id); ctx.fillStyle = "#8a8fa3"; ctx.fillText(id, 4, r * rh + rh * 0.7);
    if (!info) return;
    for (let k = 0; k < HEAT_BEATS; k++) {
      const v = info.heat.get(last - HEAT_BEATS + 1 + k) || 0;
      if (v > 0) { ctx.fillStyle = `rgba(255,95,210,${Math.min(1, v / 1.4)})`; ctx.fillRect(labelW + k * cw, r * rh + 1, cw - 1, rh - 2); }
    }
  });
  for (let k = 0; k <= HEAT_BEATS; k += 4) { ctx.fillStyle = "#3a3f50"; ctx.fillRect(labelW + k * cw - 1, 0, 1, h); }
}
let lastPanel = 0;
function frame() {
  const now = serverNow();
  drawRoll(now); drawHeat();
  if (performance.now() - lastPanel > 500) { lastPanel = performance.now(); renderNeurons(false); }
  if (stage.clock.offset !== null) {  // what the audience sees: the event left the rig → it is on screen now
    const painted = serverNow();
    for (const [kind, t] of stage.unpainted) { stage.latency[kind].push((painted - t) * 1000); trim(stage.latency[kind], 5000); }
  }
  stage.unpainted = []; stage.frames++;
  requestAnimationFrame(frame);
}
connect();
requestAnimationFrame(frame);
