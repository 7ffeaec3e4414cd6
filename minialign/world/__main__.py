"""`python -m minialign.world [--seed S] [--n N] [--bench] [--flaws]`: print a tour of the world."""

from .show import main

main()
