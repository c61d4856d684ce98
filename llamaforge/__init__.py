"""llamaforge: the LLaMA-1 paper (Touvron et al. 2023) as one small, readable system."""

__version__ = "0.1.0"
