"""The layout of prefix-sharing rows: which tokens share a forward pass, and the attention mask.

A row is a small tree of token segments laid out depth first: a root (a
context, or a preamble several contexts share), segments below it (a
context's own part, or a scored continuation) and so on. A token attends to
the earlier tokens of its own segment and to every token of its segment's
ancestors, and its rotary position continues from its parent's end, so each
root-to-leaf path is computed exactly as the plain input that concatenates
it (to float rounding). Two levels come from one context with several
continuations (HellaSwag's four endings); three from several contexts that
begin with the same long preamble (MMLU's five shots of a subject, written
before every question of that subject). Below a context its continuations
are themselves a tree (:func:`ending_tree`), so continuations that begin
alike share their start.

**When a preamble is shared.** Putting k contexts of ``w`` tokens each below
one preamble of ``p`` tokens saves ``(k - 1) p`` positions of every layer's
matmuls, but the row is ``p + k w`` wide and attention under an explicit mask
costs the whole square of the row (PyTorch's CPU flash kernel skips no
masked block; we did not measure GPU kernels): ``(p + k w)^2`` query-key
pairs instead of ``k (p + w)^2``. With ``T`` the matmul FLOPs of one position
in a layer and ``A`` those of one query-key pair, the saving is
``(k - 1) (p T + p^2 A - k w^2 A)``, largest at ``k = (p T + p^2 A) /
(2 w^2 A) + 1/2``; :func:`plan_rows` packs that many contexts per row
(fewer where the window ends) and shares nothing where it is below 2. ``A``
counts the two attention products (``4 dim``) times :data:`ATTENTION_COST`,
because they run at a fraction of a large matmul's speed; the choice only
moves work around, it never changes a score. Contexts are candidates when
their sorted neighbours share at least :data:`MIN_SHARED` tokens: a
five-shot MMLU preamble shares hundreds, two PIQA questions share
``Question:`` and nothing is packed. A run of such neighbours is packed below
the start they all share if that pays, else split where neighbours share
least (MMLU's instruction, the same for every subject, joins all subjects into
one run; split, each subject packs below its own shots), up to
:data:`MAX_LEVELS` nested levels.
"""

from __future__ import annotations

import torch

MIN_SHARED = 32
ATTENTION_COST = 4.0
MAX_LEVELS = 8  # nested preambles considered per run (each level is one pass over it)

# A scored continuation: its tokens and the items that read their scores from it.
Suffix = tuple[tuple[int, ...], list[int]]
# A context and continuations below it that fit one row together.
Unit = tuple[tuple[int, ...], list[Suffix]]
# One segment of a row: tokens, index of its parent segment (-1: the root), and
# the items whose continuation ends on it (None: not scored, a context or
# preamble; [] scored, a start that continuations below it share).
Segment = tuple[tuple[int, ...], int, list[int] | None]
Row = list[Segment]


def split_units(groups: list[Unit], max_seq_len: int) -> list[Unit]:
    """Each context with the continuations that fit one window with it.

    Continuations are taken in sorted order, so neighbours that share a start
    share a row and its tree (:func:`ending_tree`), and a row's width is the
    tree's: each continuation adds what it does not share with the one before
    it. A context whose continuations do not fit together is split over
    several units, each repeating the context (every single continuation
    fits: the context and it are one model input, at most ``max_seq_len``
    long).
    """
    units: list[Unit] = []
    for prefix, suffixes in groups:
        unit: list[Suffix] = []
        width = len(prefix)
        for suffix in sorted(suffixes, key=lambda kv: kv[0]):
            added = len(suffix[0]) - (_common(unit[-1][0], suffix[0]) if unit else 0)
            if unit and width + added > max_seq_len:
                units.append((prefix, unit))
                unit, width, added = [], len(prefix), len(suffix[0])
            unit.append(suffix)
            width += added
        units.append((prefix, unit))
    return units


def tree_width(suffixes: list[Suffix]) -> int:
    """Positions of the tree of ``suffixes``: each adds what it does not share with its sorted neighbour."""
    ordered = sorted(tokens for tokens, _ in suffixes)
    shared = sum(_common(a, b) for a, b in zip(ordered, ordered[1:], strict=False))
    return sum(len(tokens) for tokens in ordered) - shared


def unit_row(unit: Unit) -> Row:
    """A context and its continuations as a row: the context, then their radix tree."""
    prefix, suffixes = unit
    row: Row = [(prefix, -1, None)]
    row.extend(ending_tree(suffixes, parent=0, first=1))
    return row


def ending_tree(suffixes: list[Suffix], parent: int, first: int) -> list[Segment]:
    """The continuations below segment ``parent`` as a radix tree of segments, depth first.

    Continuations that begin alike share their common start: every scored
    input begins with the context's last token (it predicts each
    continuation's first one), and two PIQA solutions can be one edit apart
    (the dataset card's example shares its first 17 words: "...bedding made
    of ripped paper strips, ..." / "...ripped jeans material, ..."). Each
    shared token is computed and projected once; a
    token's output is the same whichever continuation reads it, since it sees
    the same ancestors at the same rotary position. Every segment is scored
    (each position predicts the next token of some continuation); ``owners``
    lists the items whose continuation ends there, ``[]`` where none does.
    ``first`` is the index the first returned segment gets in its row.
    Iterative (an explicit stack), since a chain of continuations that extend
    one another nests as deep as there are continuations.
    """
    out: list[Segment] = []
    stack = [(sorted(suffixes, key=lambda s: s[0]), 0, parent)]
    while stack:
        group, depth, above = stack.pop()
        # Sorted: the first and last continuation bound the start all of them share.
        shared = _common(group[0][0], group[-1][0])
        if shared > depth:
            ending_here = [i for tokens, owners in group if len(tokens) == shared for i in owners]
            out.append((group[0][0][depth:shared], above, ending_here))
            above, depth = first + len(out) - 1, shared
            group = [suffix for suffix in group if len(suffix[0]) > shared]
        children, start = [], 0
        for k in range(1, len(group) + 1):  # runs with the same next token
            if k == len(group) or group[k][0][depth] != group[start][0][depth]:
                children.append((group[start:k], depth, above))
                start = k
        stack.extend(reversed(children))  # popped in order: depth first, siblings sorted
    return out


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Length of the common start of ``a`` and ``b``: a binary search over slice equality.

    Slices compare in C, so a few hundred shared tokens cost ~10 comparisons
    instead of a Python loop over every token (MMLU has 14,042 questions).
    """
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def plan_rows(
    units: list[Unit], max_seq_len: int, dim: int, ffn_hidden: int
) -> tuple[list[Row], list[int]]:
    """Rows that share a preamble between units, and the indices of the units left alone.

    ``dim`` and ``ffn_hidden`` size the cost model of the module docstring
    (per layer: ``2 (4 dim^2 + 3 dim ffn_hidden)`` FLOPs per position,
    ``4 dim`` per query-key pair).
    """
    per_position = 2.0 * (4 * dim * dim + 3 * dim * ffn_hidden)
    per_pair = 4.0 * dim * ATTENTION_COST
    order = sorted(range(len(units)), key=lambda i: units[i][0])
    common = [_common(units[a][0], units[b][0]) for a, b in zip(order, order[1:], strict=False)]
    cost = _Cost(units, max_seq_len, per_position, per_pair)
    rows: list[Row] = []
    alone: list[int] = []
    start = 0
    for end in range(1, len(order) + 1):  # runs of neighbours sharing >= MIN_SHARED tokens
        if end == len(order) or common[end - 1] < MIN_SHARED:
            planned, packed, _ = cost.best(order[start:end], common[start : end - 1], MAX_LEVELS)
            rows.extend(planned)
            alone.extend(i for i in order[start:end] if i not in packed)
            start = end
    return rows, alone


class _Cost:
    """The module docstring's cost model over a run of sorted units sharing a start."""

    def __init__(
        self, units: list[Unit], max_seq_len: int, per_position: float, per_pair: float
    ) -> None:
        self.units, self.max_seq_len = units, max_seq_len
        self.per_position, self.per_pair = per_position, per_pair

    def best(
        self, run: list[int], common: list[int], levels: int
    ) -> tuple[list[Row], set[int], float]:
        """Rows, the units in them and the FLOPs saved: the run below its shared start, or finer.

        Only where the shared start is too short to pay for itself is the run
        split where neighbours share least, giving sub-runs with longer shared
        starts (the five shots of one MMLU subject below the instruction every
        subject shares). A run that pays whole stays whole: splitting it by a
        few more shared tokens gives rows of ragged widths, and the batch pads
        every row to the widest, which the model does not count (on the
        preamble benchmark the finer rows were 1.03x instead of 1.66x faster
        than no sharing).
        """
        if len(run) < 2:
            return [], set(), 0.0
        shared = min(common)
        whole = self.pack(run, shared)
        if levels == 0 or all(c == shared for c in common):
            return whole
        rows: list[Row] = []
        packed: set[int] = set()
        saved = 0.0
        first = 0
        for i in range(1, len(run) + 1):
            if i == len(run) or common[i - 1] == shared:
                part = self.best(run[first:i], common[first : i - 1], levels - 1)
                rows, packed, saved = rows + part[0], packed | part[1], saved + part[2]
                first = i
        return whole if whole[0] else (rows, packed, saved)

    def pack(self, run: list[int], shared: int) -> tuple[list[Row], set[int], float]:
        """Rows of ``run``'s units below their first ``shared`` tokens, those units, FLOPs saved."""
        units = self.units
        widths = [len(units[i][0]) - shared + tree_width(units[i][1]) for i in run]
        mean = sum(widths) / len(widths)
        gain = shared * self.per_position + shared * shared * self.per_pair
        best = int(gain / (2 * mean * mean * self.per_pair) + 0.5)
        if best < 2:
            return [], set(), 0.0
        groups: list[list[int]] = [[]]
        width = 0
        for j, unit_width in enumerate(widths):
            if groups[-1] and (
                len(groups[-1]) == best or shared + width + unit_width > self.max_seq_len
            ):
                groups.append([])
                width = 0
            groups[-1].append(j)
            width += unit_width
        rows: list[Row] = []
        packed: set[int] = set()
        saved = 0.0
        for group in groups:
            if len(group) < 2:
                continue  # a unit alone keeps its own row
            together = (shared + sum(widths[j] for j in group)) ** 2
            apart = sum((shared + widths[j]) ** 2 for j in group)
            saved += (len(group) - 1) * shared * self.per_position
            saved -= self.per_pair * (together - apart)
            rows.append(self._row([run[j] for j in group], shared))
            packed.update(run[j] for j in group)
        return rows, packed, saved

    def _row(self, members: list[int], shared: int) -> Row:
        row: Row = [(self.units[members[0]][0][:shared], -1, None)]
        for i in members:
            prefix, suffixes = self.units[i]
            parent = len(row)  # index of this unit's own context segment
            row.append((prefix[shared:], 0, None))
            row.extend(ending_tree(suffixes, parent=parent, first=len(row)))
        return row


def row_width(row: Row) -> int:
    return sum(len(tokens) for tokens, _, _ in row)


def layout(
    rows: list[Row], device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    list[tuple[int, int, int]],
    list[tuple[list[int], list[int]]],
]:
    """Tokens, rotary positions and additive mask (batch, 1, W, W) of ``rows``; what is scored.

    ``scored`` lists ``(row, first column, length)`` of every scored segment,
    in row-major order: the positions to project, each once. A pick is
    ``(offsets, owners)``: the indices, into those projected positions, of
    the path from the first scored segment down to the segment on which the
    owners' continuation ends (a continuation's positions span every shared
    segment above its own). Depth-first order makes "key ``j`` is in an
    ancestor of query ``i``'s segment, or earlier in its own" the same as
    ``j <= i < end[j]``, with ``end[j]`` the column after the last descendant
    of ``j``'s segment: one comparison per pair, no lookup. Padding at the
    end of a row gets ``end = W``, so it sees the padding before it (no
    attention row is empty) and no real token sees it. The mask is additive
    (0 or -inf, in the model's ``dtype``) because SDPA would otherwise turn a
    boolean mask into that in every layer.
    """
    width = max(row_width(row) for row in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    subtree_end = torch.full((len(rows), width), width, dtype=torch.long)
    scored: list[tuple[int, int, int]] = []
    picks: list[tuple[list[int], list[int]]] = []
    projected = 0  # positions scored so far in the batch
    for r, row in enumerate(rows):
        column = 0
        starts: list[int] = []  # rotary position of each segment's first token
        spans: list[list[int]] = []  # [first column, end of the subtree] per segment
        paths: list[list[int]] = []  # offsets of the scored path down to each segment
        for part, parent, owners in row:
            start = 0 if parent < 0 else starts[parent] + len(row[parent][0])
            starts.append(start)
            end = column + len(part)
            tokens[r, column:end] = torch.tensor(part, dtype=torch.long)
            positions[r, column:end] = torch.arange(start, start + len(part))
            spans.append([column, end])
            path: list[int] = []
            if owners is not None:
                above = paths[parent] if parent >= 0 else []
                path = above + list(range(projected, projected + len(part)))
                scored.append((r, column, len(part)))
                projected += len(part)
                if owners:
                    picks.append((path, owners))
            paths.append(path)
            column = end
        for s in range(len(row) - 1, -1, -1):  # children come after their parent
            parent = row[s][1]
            if parent >= 0:
                spans[parent][1] = max(spans[parent][1], spans[s][1])
        for (part, _, _), (first, last) in zip(row, spans, strict=True):
            subtree_end[r, first : first + len(part)] = last
    index = torch.arange(width)
    allowed = (index[None, None, :] <= index[None, :, None]) & (
        index[None, :, None] < subtree_end[:, None, :]
    )
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))
    return tokens.to(device), positions.to(device), mask[:, None].to(device), scored, picks
