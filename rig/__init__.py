"""The rig: what runs on the Raspberry Pi beside the pet and the keyboard.

Devices over swappable pin factories (``gpio``: ``sim``, ``rpi``), debounced
pads, MIDI in and out, the beat clock and its timeline, the accompaniment
scheduler, the capped on-beat treat dispenser, simulated pet and human, all
built from ``rig.config`` by ``rig.devices``; ``rig.node`` only routes between
them and the wire. Installs with ``neurojam[rig]``: never imports torch.
"""
