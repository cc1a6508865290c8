"""Synthetic Elliptic-format data: realistic graph, laundering typologies, exact aggregates."""

from replay.synth.generator import SynthData, generate, synthesize

__all__ = ["SynthData", "generate", "synthesize"]
