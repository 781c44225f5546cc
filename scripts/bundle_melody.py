"""Write the demo's human part: a public-domain fiddle tune from music21's corpus as a MIDI file.

    python scripts/bundle_melody.py  ->  configs/melodies/soldiers-joy.mid
"""

from pathlib import Path

from music21 import converter, corpus, tempo

ROOT = Path(__file__).resolve().parent.parent
path = next(p for p in corpus.getPaths(fileExtensions=["abc"]) if p.name == "SoldiersJoy.abc")
score = converter.parse(path)
part = score.parts[0] if score.parts else score
for old in part.recurse().getElementsByClass(tempo.MetronomeMark):
    old.activeSite.remove(old)
part.insert(0, tempo.MetronomeMark(number=112))
out = ROOT / "configs" / "melodies" / "soldiers-joy.mid"
part.write("midi", fp=str(out))
print(out)
