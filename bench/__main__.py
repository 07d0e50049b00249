"""``python -m bench`` = ``miniodb bench``."""

from .cli import main

main()
