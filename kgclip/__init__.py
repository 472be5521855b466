"""kgclip: Knowledge-CLIP, CLIP continued on knowledge graphs of images and texts."""

__version__ = "0.1.0"
