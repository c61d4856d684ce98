"""An independent LLaMA forward pass in Meta's layout: interleaved complex-number rotary.

It follows Meta's original ``model.py`` (``precompute_freqs_cis`` and
``apply_rotary_emb`` on adjacent channel pairs) so the tests check the q/k
permutation against the real thing, not against our own inverse.
"""

import math

import torch
import torch.nn.functional as F

# fairscale model-parallel split dimension per tensor kind (norms replicated)
FAIRSCALE_DIMS = {
    "tok_embeddings": 1,
    "output": 0,
    "wq": 0,
    "wk": 0,
    "wv": 0,
    "w1": 0,
    "w3": 0,
    "wo": 1,
    "w2": 1,
}


def fairscale_dim(name: str) -> int | None:
    return FAIRSCALE_DIMS.get(name.removesuffix(".weight").split(".")[-1])


def merge_shards(shards: list[dict]) -> dict:
    merged = {}
    for name in shards[0]:
        if name == "rope.freqs":
            continue
        dim = fairscale_dim(name)
        parts = [shard[name] for shard in shards]
        merged[name] = parts[0] if dim is None else torch.cat(parts, dim=dim)
    return merged


def split_shards(state: dict, n: int) -> list[dict]:
    shards = []
    for rank in range(n):
        shard = {}
        for name, tensor in state.items():
            dim = fairscale_dim(name)
            shard[name] = tensor if dim is None else tensor.chunk(n, dim)[rank].clone()
        shards.append(shard)
    return shards


def meta_logits(state: dict, params: dict, tokens: torch.Tensor) -> torch.Tensor:
    dim, n_heads, eps = params["dim"], params["n_heads"], params["norm_eps"]
    head_dim = dim // n_heads
    batch, seq = tokens.shape
    freqs = 1.0 / (
        params.get("rope_theta", 10000.0) ** (torch.arange(0, head_dim, 2).float() / head_dim)
    )
    freqs_cis = torch.polar(
        torch.ones(seq, head_dim // 2), torch.outer(torch.arange(seq).float(), freqs)
    )

    def norm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    def rotary(x):
        complex_x = torch.view_as_complex(x.reshape(batch, seq, n_heads, head_dim // 2, 2))
        return torch.view_as_real(complex_x * freqs_cis[None, :, None, :]).flatten(3)

    mask = torch.full((seq, seq), float("-inf")).triu(1)
    h = F.embedding(tokens, state["tok_embeddings.weight"])
    for i in range(params["n_layers"]):
        w = {
            k.removeprefix(f"layers.{i}."): v
            for k, v in state.items()
            if k.startswith(f"layers.{i}.")
        }
        x = norm(h, w["attention_norm.weight"])
        q, k, v = (
            (x @ w[f"attention.{n}.weight"].T).view(batch, seq, n_heads, head_dim)
            for n in ("wq", "wk", "wv")
        )
        q, k, v = rotary(q).transpose(1, 2), rotary(k).transpose(1, 2), v.transpose(1, 2)
        scores = q @ k.transpose(2, 3) / math.sqrt(head_dim) + mask
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, dim)
        h = h + out @ w["attention.wo.weight"].T
        x = norm(h, w["ffn_norm.weight"])
        ffn = F.silu(x @ w["feed_forward.w1.weight"].T) * (x @ w["feed_forward.w3.weight"].T)
        h = h + ffn @ w["feed_forward.w2.weight"].T
    return norm(h, state["norm.weight"]) @ state["output.weight"].T
