"""Private helpers shared by every facade: the one interpreter-exit hook (``atexit``),
and (as the layout grows) the one set of argument checks and the one background loop."""
