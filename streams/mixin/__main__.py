"""``python -m streams.mixin [generate|check] [--config FILE]``: usable before the ``onestop`` CLI wires it."""

from .cli import main

main()
