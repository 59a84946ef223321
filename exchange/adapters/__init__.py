"""Adapters between a framework's native model and a flonnx definition.

Each framework lives in its own module and imports that framework only there, so a participant with
one framework installed never needs the others.
"""
