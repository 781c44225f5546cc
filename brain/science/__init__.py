"""The science: what a researcher runs after the jam.

Evaluation against baselines (``evaluate``, ``baselines``, ``check_card``), neuron experiments (``experiments``:
ablation, attribution, tests, matching; ``patching``; ``corruption_effects``), results as rows (``results``) and
the session report (``report``). Imports the model layer (``brain.*``) only: never the live node.
"""
