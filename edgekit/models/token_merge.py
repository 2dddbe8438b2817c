"""Bipartite soft matching (ToMe, PAPERS.md section 8) with static shapes and delegate-friendly ops only.

A block with ``tokens`` tokens (after ``protected`` leading ones that never merge, the class token) splits them
alternately into sets A (even positions) and B (odd positions), scores every A token against every B token by
the cosine similarity of a metric (the attention keys summed over heads), and merges the ``r`` A tokens whose
best match is strongest into that match, by an average weighted by token size. ``r`` is fixed, so every shape
is known when the graph is traced.

The reference implementation sorts, gathers and scatter-reduces; none of that reaches XNNPACK, and
``scatter_reduce`` has no ONNX export. Here every decision is a one-hot matrix built from arithmetic the
delegates take (reshape, slice, bmm, linear, max_pool2d, clamp, abs), and merging is a product with it:

- the split: a reshape to token pairs and two slices (a zero token padded when the count is odd);
- each A token's best B token: the row maximum as a ``max_pool2d`` over the row, then ``(sim - max)`` is 0
  exactly at the maximum and negative elsewhere, so a steep clamp gives its one-hot; the first of equal
  maxima wins (a prefix count by a matmul with a triangular matrix), as with ``argmax``;
- which A tokens merge: each one's rank among the A tokens by best score is a comparison-count matrix summed
  by a matmul (ties broken by position, so the ranks are a permutation), and the top ``r`` merge;
- where the rest go: each kept A token's position among the kept (a prefix count again) picked out by
  ``relu(1 - |p - position|)``, which is one-hot because positions are whole numbers. Kept tokens stay in their
  original order (the reference sorts them by score), then the B tokens with their merges folded in.

Designs of ours rather than the paper's: the one-hot formulation, the order of kept tokens, and (SLAB)
merging for the channel mixer only, then copying each merged output back to its sources (``unmerge``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import UnsupportedOptionError

# Multiplies a score difference into a step: any difference fp32 can resolve between two cosines (>= 1e-30)
# becomes >= 1 and clamps to exactly 1; an exact 0 stays 0.
_STEEP = 2.0**100


class Matching(NamedTuple):
    """The one-hot matrices of one block's merge: ``keep`` (B, Na - r, Na) selects the kept A tokens in order,
    ``dest`` (B, Na, Nb) sends each merged A token to its B token (rows of kept tokens are zero)."""

    keep: torch.Tensor
    dest: torch.Tensor


def max_rate(tokens: int, depth: int, protected: int, carries: bool) -> int:
    """The largest r every block can merge: at most half of a block's matchable tokens are in set A.
    ``carries``: merged tokens stay merged in later blocks (ViT), or every block starts from all of them (SLAB)."""
    r = 0
    while merge_schedule(tokens, depth, r + 1, protected, carries, check=False) is not None:
        r += 1
    return r


def merge_schedule(
    tokens: int, depth: int, r: int, protected: int, carries: bool, check: bool = True
) -> tuple[int, ...] | None:
    """Tokens entering each block (protected ones included), or None (``check=False``) / an error when some block
    has fewer than 2r + 1 tokens to match."""
    counts, n = [], tokens
    for block in range(depth):
        matchable = n - protected
        # at most half of them are in set A, and one A token stays (no zero-sized tensor reaches a runtime)
        if r > (matchable - 1) // 2:
            if not check:
                return None
            limit = max_rate(tokens, depth, protected, carries)
            raise UnsupportedOptionError(
                f"--token-merge rate (block {block} has {matchable} tokens to match, so it merges at most "
                f"{(matchable - 1) // 2})",
                r,
                [f"0..{limit}"],
            )
        counts.append(n)
        if carries:
            n -= r
    return tuple(counts)


class BipartiteMerge(nn.Module):
    """Merges ``r`` of ``tokens`` tokens (B, tokens, dim), the first ``protected`` never; see the module doc."""

    def __init__(self, tokens: int, r: int, protected: int, metric_heads: int, metric_dim: int):
        super().__init__()
        self.tokens, self.r, self.protected = tokens, r, protected
        n = tokens - protected
        self.n, self.na, self.nb = n, (n + 1) // 2, n // 2
        if not 0 < r < self.na:
            raise ValueError(f"r={r} with {n} matchable tokens (1..{self.na - 1})")
        self.metric_dim = metric_dim
        na, nb = self.na, self.nb
        # keys (B, N, heads*dim) summed over heads by one linear: cosine similarity ignores the 1/heads of a mean
        head_sum = torch.eye(metric_dim).repeat(1, metric_heads)  # (dim, heads*dim)
        self.register_buffer("_head_sum", head_sum, persistent=False)
        self.register_buffer("_sum_sq", torch.ones(1, metric_dim), persistent=False)
        self.register_buffer("_before_b", torch.ones(nb, nb).tril(-1), persistent=False)  # [j, k] = k < j
        self.register_buffer("_before_a", torch.ones(na, na).tril(-1), persistent=False)  # [i, k] = k < i
        self.register_buffer("_count_a", torch.ones(1, na), persistent=False)
        self.register_buffer(
            "_slots", torch.arange(na - r, dtype=torch.float32).reshape(1, na - r, 1), persistent=False
        )

    # -- the split into protected, A and B -----------------------------------------------------------------
    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        dim = x.shape[-1]
        # no slice that covers a whole dim: XNNPACK leaves the alias_copy it lowers to outside
        head = x.narrow(1, 0, self.protected) if self.protected else None
        rest = x.narrow(1, self.protected, self.n) if self.protected else x
        if self.n % 2:
            rest = F.pad(rest, (0, 0, 0, 1))
        pairs = rest.reshape(-1, self.na, 2 * dim)
        a = pairs.narrow(2, 0, dim)
        b = pairs.narrow(2, dim, dim)
        return head, a, (b.narrow(1, 0, self.nb) if self.n % 2 else b)

    @staticmethod
    def _join(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
        """The inverse of the A / B split: (B, Na, C) and (B, Nb, C) interleaved back to (B, n, C)."""
        if n % 2:
            b = F.pad(b, (0, 0, 0, 1))
        joined = torch.cat([a, b], dim=2).reshape(-1, 2 * a.shape[1], a.shape[2])
        return joined.narrow(1, 0, n) if n % 2 else joined

    # -- the matching ----------------------------------------------------------------------------------------
    def match(self, keys: torch.Tensor) -> Matching:
        metric = F.linear(keys, self._head_sum)
        metric = metric * torch.rsqrt(F.linear(metric * metric, self._sum_sq) + 1e-12)
        _, a, b = self._split(metric)
        sim = torch.bmm(a, b.transpose(1, 2))  # (B, Na, Nb) cosine similarities
        na, nb, r = self.na, self.nb, self.r
        best = F.max_pool2d(sim.reshape(-1, 1, na, nb), kernel_size=(1, nb)).reshape(-1, na, 1)
        at_best = torch.clamp((sim - best) * _STEEP + 1.0, 0.0, 1.0)
        earlier = F.linear(at_best, self._before_b)  # how many maxima precede each column
        first_best = at_best * torch.clamp(1.0 - earlier, 0.0, 1.0)
        # rank_i = #{k: best_k > best_i} + #{k < i: best_k == best_i}: 0 for the strongest match
        above = torch.clamp((best.transpose(1, 2) - best) * _STEEP, 0.0, 1.0)  # [i, k] = best_k > best_i
        equal = 1.0 - above - above.transpose(1, 2)
        rank = F.linear(above + equal * self._before_a, self._count_a)  # (B, Na, 1)
        merged = torch.clamp(float(r) - rank, 0.0, 1.0)  # ranks are whole numbers: the top r get 1
        kept = 1.0 - merged
        position = F.linear(kept.transpose(1, 2), self._before_a)  # (B, 1, Na): kept tokens before each
        keep = torch.relu(1.0 - torch.abs(self._slots - position)) * kept.transpose(1, 2)
        return Matching(keep, first_best * merged)

    # -- applying it -------------------------------------------------------------------------------------
    def merge(self, x: torch.Tensor, size: torch.Tensor, m: Matching) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, tokens - r, C) tokens as size-weighted averages, and their sizes (B, tokens - r, 1)."""
        head, xa, xb = self._split(x)
        head_size, sa, sb = self._split(size)
        to_b = m.dest.transpose(1, 2)  # (B, Nb, Na)
        dest_size = sb + torch.bmm(to_b, sa)
        dest = (xb * sb + torch.bmm(to_b, xa * sa)) / dest_size
        tokens = _cat(head, torch.bmm(m.keep, xa), dest)
        return tokens, _cat(head_size, torch.bmm(m.keep, sa), dest_size)

    def unmerge(self, y: torch.Tensor, m: Matching) -> torch.Tensor:
        """Outputs of merged tokens (B, tokens - r, C) copied back to every token they stand for (B, tokens, C)."""
        kept_count = self.na - self.r
        head = y.narrow(1, 0, self.protected) if self.protected else None
        kept = y.narrow(1, self.protected, kept_count)
        dest = y.narrow(1, self.protected + kept_count, self.nb)
        a = torch.bmm(m.keep.transpose(1, 2), kept) + torch.bmm(m.dest, dest)
        return _cat(head, self._join(a, dest, self.n))


def _cat(*parts: torch.Tensor | None) -> torch.Tensor:
    """Tokens concatenated, leaving out an absent part (no protected tokens); a lone part as it is, because
    XNNPACK leaves a one-input cat outside the delegate."""
    present = [p for p in parts if p is not None]
    return present[0] if len(present) == 1 else torch.cat(present, dim=1)
