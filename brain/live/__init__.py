"""The live brain: what answers a rig while it plays.

``core`` turns messages into answers with no sockets (:class:`~brain.live.core.BrainCore`); ``node`` puts it on
the wire; ``rig_view``, ``sonify`` and ``reward_rule`` are each rig's picture, band and treat rule;
``stage_feed`` tells the stages; ``replay`` feeds a recorded session back through a brain. Imports the model
layer (``brain.*``) only: never ``brain.science`` or ``brain.training``.
"""
