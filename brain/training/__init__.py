"""Training the shipped model (``python -m brain.training.train``): reads the corpus, writes weights, a card and
neuron statistics. Never imported by the live brain.
"""
