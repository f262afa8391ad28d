"""``python -m mbtcode`` runs the command line."""

from .cli import main

main()
