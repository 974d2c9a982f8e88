"""``python -m monitoring [generate|check] [--config FILE]``: usable before the ``onestop`` CLI wires it."""

from monitoring.cli import main

main()
