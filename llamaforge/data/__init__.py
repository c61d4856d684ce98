"""Data: documents -> token shards on disk -> packed, mixed, resumable batches.

``tokenize_folder`` tokenizes documents once into token folders (``shards``);
``loader`` turns several folders into the trainer's batch stream with the
paper's mixture weights (Table 1).
"""

from llamaforge.data.documents import read_documents
from llamaforge.data.loader import FeistelPermutation, TokenLoader
from llamaforge.data.shard_writer import ShardWriter
from llamaforge.data.shards import ShardInfo, TokenIndex, TokenShards, token_dtype
from llamaforge.data.tokenize_folder import tokenize_to_shards

__all__ = [
    "FeistelPermutation",
    "ShardInfo",
    "ShardWriter",
    "TokenIndex",
    "TokenLoader",
    "TokenShards",
    "read_documents",
    "token_dtype",
    "tokenize_to_shards",
]
