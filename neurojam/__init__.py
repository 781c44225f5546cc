"""The roof: the ``neurojam`` command (``neurojam.cli``, one module per command group) and the whole
configuration composed from the nodes' sections (``neurojam.config``). Nothing below imports it."""
