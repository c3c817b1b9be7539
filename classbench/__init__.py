"""classbench: train many image classifiers under one recipe, then compare them."""

__version__ = "0.1.0"
