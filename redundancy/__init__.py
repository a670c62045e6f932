"""redundancy: analyses of redundancy in pretrained transformers (Dalvi et al., EMNLP 2020).

The curated API is re-exported here; see docs/DESIGN.md for the module map.
"""

__version__ = "0.1.0"
