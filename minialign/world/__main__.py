"""`python -m minialign.world [--seed S] [--n N] [--bench]`: print a tour of the world."""

from .show import main

main()
