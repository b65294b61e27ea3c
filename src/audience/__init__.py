"""audience: rank the users most likely to engage with a new short-video clip (VK-LSVD)."""

__version__ = "0.1.0"
