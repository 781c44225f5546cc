"""The brain: notes → text → a transformer (TransformerLens) → neurons → accompaniment and treat requests.

Model loading, the note-text encoder, the streaming neuron reader with
steering, the sonifier and reward rule (reading one ``RigView`` of the rig),
the brain node, replay of recorded sessions, the neuron report and
experiments, and the default model's training. Installs with ``neurojam[brain]``.
"""
