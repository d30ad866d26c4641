"""Arena planning: one offset per buffer in a single arena, no two live buffers overlapping.

Buffers are placed first-fit (each at the lowest offset free at every step it lives) in one of
these orders:

  size        largest first (TensorFlow Lite Micro's GreedyMemoryPlanner order)
  peak_first  the buffers live at any step that reaches the peak first, oldest lowest, so each
              peak step's buffers stack without a gap; the rest fill the gaps largest first
  start       in order of first use (a stack allocator's order)
  lifetime    longest-lived first

``plan_arena`` first plans *by section*: the op list is a chain of sections (stem, blocks, head)
that meet where a single buffer, the token matrix x, is live across the cut. That buffer is pinned
at offset 0, or, when it overlaps the previous pinned buffer in time (x_in -> x_out of a block
without token overwriting), at the top of a target arena equal to the lower bound (a ping-pong);
then each section is packed alone, order after order until one reaches the target: the named
orders, then (rarely needed) every order of a small section or seeded shuffles of a larger one. If
the result still misses the lower bound, the whole list is planned in the named orders as well;
the smallest arena wins.

``greedy_by_size`` is TFLM's planner alone: the layer-wise baseline. Offsets are multiples of 4
because every buffer size is (``ops.ALIGN``). Everything is deterministic (ties by buffer index).
"""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass
from itertools import permutations

from mcuformer.memory.lifetimes import Buffer, Liveness, analyse
from mcuformer.memory.ops import ALIGN, Op

STRATEGIES = ("size", "peak_first", "start", "lifetime")
SEARCH_ORDERS = 200


@dataclass
class ArenaPlan:
    arena_bytes: int
    strategy: str
    buffer_offsets: list[int]
    liveness: Liveness

    @property
    def lower_bound_bytes(self) -> int:
        return self.liveness.lower_bound

    @property
    def ops(self) -> list[Op]:
        return self.liveness.ops

    def offset(self, tensor: str) -> int:
        """Arena offset of a tensor (tensors written over one another share their buffer's bytes)."""
        index, inside = self.liveness.placement[tensor]
        return self.buffer_offsets[index] + inside

    def offsets(self) -> dict[str, int]:
        return {name: self.offset(name) for name in self.liveness.tensors}


def plan_arena(ops_or_liveness, strategies=STRATEGIES) -> ArenaPlan:
    live = ops_or_liveness if isinstance(ops_or_liveness, Liveness) else analyse(ops_or_liveness)
    every = range(len(live.buffers))
    best = _plan_by_section(live, strategies)
    for name in strategies:
        if best.arena_bytes == live.lower_bound:
            break
        offsets, arena = _first_fit(live.buffers, _order(live, name, every), [0] * len(live.buffers))
        if arena < best.arena_bytes:
            best = ArenaPlan(arena, name, offsets, live)
    return best


def greedy_by_size(ops_or_liveness) -> ArenaPlan:
    """TensorFlow Lite Micro's GreedyMemoryPlanner: largest buffer first, each at the first gap
    that is free during its whole lifetime."""
    live = ops_or_liveness if isinstance(ops_or_liveness, Liveness) else analyse(ops_or_liveness)
    offsets, arena = _first_fit(live.buffers, _order(live, "size", range(len(live.buffers))),
                                [0] * len(live.buffers))
    return ArenaPlan(arena, "size", offsets, live)


def _plan_by_section(live: Liveness, strategies) -> ArenaPlan:
    bufs, target = live.buffers, live.lower_bound
    offsets = [0] * len(bufs)
    cuts = _cuts(live)
    pinned: list[int] = []
    for _, i in cuts:
        if pinned and i == pinned[-1]:
            continue
        if pinned:
            prev = bufs[pinned[-1]]
            overlap = prev.first <= bufs[i].last and bufs[i].first <= prev.last
            offsets[i] = target - bufs[i].size if overlap and offsets[pinned[-1]] < bufs[i].size else 0
        pinned.append(i)
    fixed = set(pinned)
    arena = max((offsets[i] + bufs[i].size for i in pinned), default=0)
    for k, members in enumerate(_sections(live, [s for s, _ in cuts], fixed)):
        preplaced = [i for i in pinned if _meets(bufs[i], bufs, members)]
        best = None
        for order in _section_orders(live, members, strategies, k):
            trial = list(offsets)
            _, top = _first_fit(bufs, order, trial, preplaced)
            if best is None or top < best[0]:
                best = (top, trial)
            if top <= target:
                break
        top, trial = best
        for i in members:
            offsets[i] = trial[i]
        arena = max(arena, top)
    return ArenaPlan(arena, "sections", offsets, live)


def _section_orders(live: Liveness, members: list[int], strategies, seed: int):
    """The named orders, then (only reached while the target is missed) every order of a small
    section or ``SEARCH_ORDERS`` seeded shuffles of a larger one: some order always makes first-fit
    optimal, and sections are small."""
    for name in strategies:
        yield _order(live, name, members)
    if len(members) <= 6:
        yield from (list(p) for p in permutations(members))
        return
    rng = random.Random(seed)
    order = _order(live, "size", members)
    for _ in range(SEARCH_ORDERS):
        rng.shuffle(order)
        yield list(order)


def _cuts(live: Liveness) -> list[tuple[int, int]]:
    """(step s, buffer) for every boundary between steps s and s+1 that exactly one buffer lives across."""
    n = len(live.ops)
    count, index_sum = [0] * n, [0] * n
    for b in live.buffers:
        for s in range(b.first, b.last):
            count[s] += 1
            index_sum[s] += b.index
    return [(s, index_sum[s]) for s in range(n - 1) if count[s] == 1]


def _sections(live: Liveness, cut_steps: list[int], fixed: set[int]) -> list[list[int]]:
    """The other buffers grouped by the section they live in (none crosses a cut)."""
    groups: dict[int, list[int]] = {}
    for b in live.buffers:
        if b.index not in fixed:
            groups.setdefault(bisect_left(cut_steps, b.first), []).append(b.index)
    return list(groups.values())


def _meets(pin: Buffer, bufs: list[Buffer], members: list[int]) -> bool:
    return any(pin.first <= bufs[i].last and bufs[i].first <= pin.last for i in members)


def _order(live: Liveness, strategy: str, members) -> list[int]:
    bufs = live.buffers
    by_size = sorted(members, key=lambda i: (-bufs[i].size, i))
    if strategy == "size":
        return by_size
    if strategy == "peak_first":
        lo, hi = min(bufs[i].first for i in members), max(bufs[i].last for i in members)
        top = max(live.live_bytes[lo:hi + 1])
        peaks = [s for s in range(lo, hi + 1) if live.live_bytes[s] == top]
        at_peak = [i for i in members if any(bufs[i].first <= s <= bufs[i].last for s in peaks)]
        at_peak.sort(key=lambda i: (bufs[i].first, -bufs[i].size, i))
        chosen = set(at_peak)
        return at_peak + [i for i in by_size if i not in chosen]
    if strategy == "start":
        return sorted(members, key=lambda i: (bufs[i].first, -bufs[i].size, i))
    if strategy == "lifetime":
        return sorted(members, key=lambda i: (-bufs[i].lifetime, -bufs[i].size, i))
    raise ValueError(f"unknown planning strategy {strategy!r}; known: {STRATEGIES}")


def _first_fit(bufs: list[Buffer], order: list[int], offsets: list[int], preplaced=()) -> tuple[list[int], int]:
    """Place ``order`` one by one around the ``preplaced`` buffers (whose ``offsets`` are set);
    fills ``offsets`` and returns it with the top of everything placed."""
    n_steps = max(b.last for b in bufs) + 1
    placed_at: list[list[int]] = [[] for _ in range(n_steps)]
    segments: dict[int, list] = {}
    arena = 0
    for i in preplaced:
        for s in range(bufs[i].first, bufs[i].last + 1):
            placed_at[s].append(i)
        arena = max(arena, offsets[i] + bufs[i].size)
    for i in order:
        b = bufs[i]
        mine = segments.setdefault(i, b.segments())
        neighbours = set()
        for s in range(b.first, b.last + 1):
            neighbours.update(placed_at[s])
        forbidden = []  # open intervals of offsets that would overlap a placed buffer
        for j in neighbours:
            base = offsets[j]
            for a0, a1, a_bytes in segments.setdefault(j, bufs[j].segments()):
                for b0, b1, b_bytes in mine:
                    if a0 <= b1 and b0 <= a1 and a_bytes and b_bytes:
                        forbidden.append((base - b_bytes, base + a_bytes))
        offsets[i] = _lowest_free(forbidden)
        arena = max(arena, offsets[i] + b.size)
        for s in range(b.first, b.last + 1):
            placed_at[s].append(i)
    return offsets, arena


def _lowest_free(forbidden: list[tuple[int, int]]) -> int:
    """The smallest offset >= 0 inside none of the open intervals."""
    offset = 0
    for lo, hi in sorted(forbidden):
        if lo >= offset:
            break
        if hi > offset:
            offset = hi
    return offset


class PlanError(AssertionError):
    """A plan that breaks its own rules: a bug, never the user's input."""


def check_plan(plan: ArenaPlan) -> None:
    """Every offset aligned and inside the arena; at every step, no two live tensors of different
    buffers overlap (tensors of one buffer are written over each other on purpose)."""
    live = plan.liveness
    spans = {}
    for name, t in live.tensors.items():
        off = plan.offset(name)
        if off % ALIGN or off < 0 or off + t.size > plan.arena_bytes:
            raise PlanError(f"tensor {name} at [{off}, {off + t.size}) breaks alignment or the arena "
                            f"of {plan.arena_bytes} B")
        spans[name] = (off, off + t.size, live.placement[name][0])
    for step in range(len(live.ops)):
        now = sorted((spans[n] + (n,)) for n in live.tensors if live.first[n] <= step <= live.last[n])
        for k, (lo, hi, buf, name) in enumerate(now):
            for lo2, hi2, buf2, name2 in now[k + 1:]:
                if lo2 >= hi:
                    break
                if buf2 != buf:
                    raise PlanError(f"op {step} ({live.ops[step].name}): {name} [{lo}, {hi}) overlaps "
                                    f"{name2} [{lo2}, {hi2})")
