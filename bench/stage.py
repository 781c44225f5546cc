"""The stage where the audience sits: a rig's event leaving → its notes and neurons painted in the browser.

    python bench/stage.py [--quick] [--memory-minutes 10]

A real demo (`neurojam demo --rigs N`: brain + N simulated rigs, each a pet and a folk tune) and a real
`neurojam stage`, with the page open in headless Chromium (the Debian package). The page itself measures: each
event carries the time it left the rig (rig clock → brain clock → stage clock by the measured offsets); the page
maps the stage clock to `performance.now()` by a min-RTT ping and records, in the animation frame that draws the
event, painted − left. Reported: p50/p99/max for the rig's own notes and for the neurons answering them, at 1 and 4
rigs, beside the paint budget of a 30 fps display (33 ms; target p99 < 50 ms); the page's main-thread busy share
(Chromium's TaskDuration) at the demo's event rate; with --memory-minutes, the JS heap (after a forced GC) and the
stage server's RSS at the start and end of a long jam.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, pct, table

ROOT = Path(__file__).resolve().parent.parent



def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def jam(rigs: int, seconds: float, warmup: float, screenshot: str | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    from neurojam.processes import free_port, free_port_pair, wait_http

    ports, port = free_port_pair(), free_port()
    sets = ["--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}"]
    py = [sys.executable, "-m", "neurojam.cli"]
    stage = subprocess.Popen(py + ["stage", "--port", str(port), *sets], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    wait_http(f"http://127.0.0.1:{port}/", stage)
    demo = subprocess.Popen(py + ["demo", "--rigs", str(rigs), "--seconds", str(seconds + warmup + 15), "--no-view",
                                  "--out", tempfile.mkdtemp(), *sets], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    out: dict = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("stage.link.alive && stage.neurons.length > 5", timeout=120_000)
            time.sleep(warmup)

            def metrics() -> dict:
                cdp.send("HeapProfiler.collectGarbage")
                return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

            page.evaluate("stage.latency.note = []; stage.latency.neurons = []")
            m0, t0, rss0 = metrics(), time.monotonic(), rss_mb(stage.pid)
            time.sleep(seconds)
            m1, t1, rss1 = metrics(), time.monotonic(), rss_mb(stage.pid)
            out = {"note": page.evaluate("stage.latency.note"), "neurons": page.evaluate("stage.latency.neurons"),
                   "busy": (m1["TaskDuration"] - m0["TaskDuration"]) / (t1 - t0),
                   "heap0": m0["JSHeapUsedSize"] / 2**20, "heap1": m1["JSHeapUsedSize"] / 2**20,
                   "rss0": rss0, "rss1": rss1}
            if screenshot:
                page.screenshot(path=screenshot)
            browser.close()
    finally:
        stage.terminate()
        demo.terminate()  # it stops its nodes, then writes its jam, .wav and report (minutes after a long jam)
        try:
            demo.wait(timeout=900)
        except subprocess.TimeoutExpired:
            demo.kill()
        stage.wait(timeout=10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 s per row instead of 40")
    ap.add_argument("--memory-minutes", type=float, default=0, help="also a jam this long, for memory growth")
    ap.add_argument("--memory-only", action="store_true", help="only the long jam")
    ap.add_argument("--screenshot", metavar="PNG", help="save the page at the end of the 1-rig row (docs/stage.png)")
    args = ap.parse_args()
    if not shutil.which("chromium"):
        raise SystemExit("needs the Debian chromium package (apt-get install chromium)")
    print(f"machine: {machine()}; browser: headless Chromium")
    seconds = 15 if args.quick else 40
    rows = []
    for rigs in () if args.memory_only else (1, 4):
        r = jam(rigs, seconds, warmup=5, screenshot=args.screenshot if rigs == 1 and not args.memory_minutes else None)
        for kind in ("note", "neurons"):
            ms = r[kind]
            rows.append([rigs, "notes (the rig's, the brain's answers)" if kind == "note" else "neurons answering the rig's events", len(ms),
                         pct(ms, 0.5), pct(ms, 0.99), max(ms) if ms else float("nan"), f"{100 * r['busy']:.1f} %"])
    if rows:
        table(f"event leaves the rig → painted in the page ({seconds} s per row; a 30 fps frame is 33 ms, target p99 < 50 ms)",
              ["rigs", "what", "events", "p50 ms", "p99 ms", "max ms", "page main thread busy"], rows)
    if args.memory_minutes:
        r = jam(1, args.memory_minutes * 60, warmup=10, screenshot=args.screenshot)
        table(f"memory over a {args.memory_minutes:g}-minute jam (after a forced GC)",
              ["what", "start MB", "end MB", "growth MB"],
              [["page JS heap", r["heap0"], r["heap1"], r["heap1"] - r["heap0"]],
               ["stage server RSS", r["rss0"], r["rss1"], r["rss1"] - r["rss0"]]])


if __name__ == "__main__":
    main()
