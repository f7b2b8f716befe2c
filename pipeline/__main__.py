"""`python -m pipeline` runs the grille command line."""

from pipeline.cli import main

main()
