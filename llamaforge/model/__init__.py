"""The LLaMA architecture (paper §2.2). Imports nothing from train/ or data/."""

from llamaforge.model.config import PRESETS, ModelConfig, get_preset
from llamaforge.model.transformer import KVCache, Transformer, build_model

__all__ = ["PRESETS", "KVCache", "ModelConfig", "Transformer", "build_model", "get_preset"]
