"""pseudo: video moment retrieval without human timestamps."""

__version__ = "0.1.0"
