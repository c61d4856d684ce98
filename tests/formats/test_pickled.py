import pytest
import torch

from llamaforge.errors import CheckpointError
from llamaforge.formats.pickled import load_pickled_weights, self_overlapping

# 4 TB once materialised: a copy would fail in the allocator (or swap the machine), so
# only a refusal made from the strides alone gives the CheckpointError asserted below.
HUGE = (10**6, 10**6)


def test_views_of_real_tensors_do_not_overlap():
    dense = torch.randn(6, 4, 5)
    for view in (dense, dense.transpose(0, 2), dense[:, 1:3], dense[::2], dense[0, 0], dense[:0]):
        assert not self_overlapping(view)
    assert not self_overlapping(torch.zeros(1).expand(1, 1))  # size-1 dims address one element


@pytest.mark.parametrize(
    "tensor",
    [
        torch.zeros(1).expand(3, 4),
        torch.zeros(4, 1).expand(4, 3),
        torch.zeros(9).as_strided((3, 3), (1, 1)),
        torch.zeros(9).as_strided((3, 3), (2, 1)),
    ],
    ids=["expand", "expand-one-dim", "diagonal-strides", "short-stride"],
)
def test_strides_that_reuse_elements_overlap(tensor):
    assert self_overlapping(tensor)


def test_an_expanded_tensor_is_refused_without_being_expanded(tmp_path):
    path = tmp_path / "bomb.pth"
    torch.save({"w": torch.randn(8), "bomb": torch.zeros(1).expand(*HUGE)}, path)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError) as caught:
        load_pickled_weights(path, mmap=True)
    message = str(caught.value)
    assert str(path) in message and "bomb has shape (1000000, 1000000)" in message
    assert "strides (0, 0) over 4 bytes" in message


def test_a_saved_view_loads_as_stored(tmp_path):
    base = torch.randn(5, 6)
    path = tmp_path / "view.bin"
    torch.save({"t": base.t(), "cols": base[:, 2:4]}, path)  # whole storage is saved
    weights = load_pickled_weights(path)
    assert torch.equal(weights["t"], base.t()) and torch.equal(weights["cols"], base[:, 2:4])


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.bin is missing"):
        load_pickled_weights(tmp_path / "nothing.bin")
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="junk.bin: cannot be read"):
        load_pickled_weights(tmp_path / "junk.bin")
