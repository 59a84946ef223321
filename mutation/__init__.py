"""Mutation testing (cosmic-ray) of the modules that carry the promises; ``make mutation``."""
