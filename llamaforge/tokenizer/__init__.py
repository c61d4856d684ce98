"""Tokenizer: SentencePiece BPE with split digits and byte fallback (LLaMA §2.1).

``train_tokenizer`` learns a ``.model`` file; ``Tokenizer`` encodes and
decodes with it, losslessly for any Unicode text.
"""

from llamaforge.tokenizer.tokenizer import Tokenizer
from llamaforge.tokenizer.trainer import train_tokenizer

__all__ = ["Tokenizer", "train_tokenizer"]
