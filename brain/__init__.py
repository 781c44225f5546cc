"""The brain: notes → text → a transformer (TransformerLens) → neurons → accompaniment and treat requests.

Three programs over one model layer. The model layer, here: loading models (``models``), the note-text encoder
(``encoder``), the corpus the models ship with (``corpus``), reading a growing text with steering (``stream``,
``kv_cache``, ``activations``, ``corruption``), and what is known about each neuron (``neuron_stats``,
``neuron_labels``, ``logit_effect``). On top of it, each in its own package: ``live`` (the node a rig talks to),
``science`` (evaluation, experiments, the report) and ``training``. Installs with ``neurojam[brain]``.
"""
