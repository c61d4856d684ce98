"""Parameter names as the checkpoint formats know them, whatever wraps the model.

``torch.compile`` inserts ``_orig_mod.``, activation checkpointing
``_checkpoint_wrapped_module.`` and DDP a leading ``module.``. Checkpoints,
optimizer groups and converters all store the plain Meta-style names
(``layers.0.attention.wq.weight``), so a checkpoint written by a compiled,
checkpointed run loads into a bare model and the other way round.
"""

WRAPPER_FRAGMENTS = ("_orig_mod.", "_checkpoint_wrapped_module.")


def plain_name(name: str) -> str:
    """``name`` with every wrapper prefix removed."""
    for fragment in WRAPPER_FRAGMENTS:
        name = name.replace(fragment, "")
    return name.removeprefix("module.")
