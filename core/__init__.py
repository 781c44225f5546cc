"""The floor every node stands on: the error root and the typed-config machinery.

Imports nothing else of neurojam's, so the rig (``neurojam[rig]`` on a Pi), the
wire, the sessions and the brain can all use it without pulling in the CLI.
"""
