"""The wire between the nodes: message kinds (``messages``), the ZeroMQ link, clock offset, the beat grid.

Nothing here knows about sessions, models or the CLI; both nodes install it.
"""
