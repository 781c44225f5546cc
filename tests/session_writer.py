"""A process that records notes as fast as a live rig would, until killed (for the SIGKILL test)."""

import sys
import time

from bridge.messages import Note, encode
from recording.log import SessionRecorder

rec = SessionRecorder(sys.argv[1], {"node": "test"}, flush_ms=20)
i = 0
start = time.monotonic()
while True:
    now = time.monotonic()
    rec.record("out", encode(Note(source="pet", note=i % 128, seq=i, t=now, node="w")), now)
    if i % 50 == 0:
        print(f"{i} {now}", flush=True)
    i += 1
    time.sleep(0.0005)
