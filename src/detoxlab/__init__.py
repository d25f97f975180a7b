"""detoxlab: detoxify language models with UniDetox, RAD/ARM and NADO/ACF, and evaluate every system on one protocol."""

__version__ = "0.1.0"
