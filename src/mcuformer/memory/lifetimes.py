"""Lifetimes of the tensors of an op list, the buffers they share, and the bytes live at each op.

Steps are op indices. A tensor is live from the op that first writes it (step 0 for an input that
nothing in the list writes: the image, or a section's incoming x) to the op that last reads it (the
end of the list for an output nothing reads: the logits, or a section's outgoing x). Scratch lives
during its op only. Tensors written over one another (``Tensor.alias``) form one *buffer*; its
extent at a step is the furthest byte of its members live then, counted from the buffer's start.

The lower bound of an op order is the most bytes live at any step: no arena can be smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuformer.memory.ops import Op, Tensor


@dataclass
class Buffer:
    """Tensors that share bytes; ``members`` are (tensor, offset inside the buffer)."""

    index: int
    members: list[tuple[Tensor, int]]
    first: int
    last: int
    extent: list[int]  # bytes in use at steps first .. last

    @property
    def size(self) -> int:
        return max(self.extent)

    @property
    def lifetime(self) -> int:
        return self.last - self.first + 1

    def segments(self) -> list[tuple[int, int, int]]:
        """(first step, last step, bytes) runs of constant extent."""
        runs, start = [], self.first
        for i in range(1, len(self.extent) + 1):
            if i == len(self.extent) or self.extent[i] != self.extent[i - 1]:
                runs.append((start, self.first + i - 1, self.extent[i - 1]))
                start = self.first + i
        return runs


@dataclass
class Liveness:
    ops: list[Op]
    tensors: dict[str, Tensor]
    first: dict[str, int]
    last: dict[str, int]
    buffers: list[Buffer]
    placement: dict[str, tuple[int, int]]  # tensor name -> (buffer index, offset inside it)
    live_bytes: list[int]  # per step

    @property
    def lower_bound(self) -> int:
        return max(self.live_bytes)

    @property
    def peak_step(self) -> int:
        """The first op at which the lower bound is reached."""
        return self.live_bytes.index(self.lower_bound)


def analyse(ops: list[Op]) -> Liveness:
    if not ops:
        raise ValueError("empty op list")
    tensors: dict[str, Tensor] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    read: set[str] = set()
    for k, op in enumerate(ops):
        for t in op.inputs:
            if t.name not in first:
                first[t.name], tensors[t.name] = 0, t
            last[t.name] = k
            read.add(t.name)
        for t in op.outputs + op.scratch:
            if t.name not in first:
                first[t.name], tensors[t.name] = k, t
            last[t.name] = max(last.get(t.name, k), k)
    end = len(ops) - 1
    for name, t in tensors.items():
        if t.kind != "scratch" and name not in read:
            last[name] = end
    buffers, placement = _group(tensors, first, last)
    live = [0] * len(ops)
    for b in buffers:
        for i, nbytes in enumerate(b.extent):
            live[b.first + i] += nbytes
    return Liveness(ops, tensors, first, last, buffers, placement, live)


def _group(tensors, first, last) -> tuple[list[Buffer], dict[str, tuple[int, int]]]:
    root: dict[str, tuple[str, int]] = {}

    def resolve(name: str) -> tuple[str, int]:
        if name not in root:
            t = tensors[name]
            if t.alias is None:
                root[name] = (name, 0)
            else:
                if t.alias not in tensors:
                    raise ValueError(f"tensor {name} is written over {t.alias}, which no op uses")
                r, off = resolve(t.alias)
                root[name] = (r, off + t.alias_offset)
        return root[name]

    members: dict[str, list[tuple[Tensor, int]]] = {}
    for name in tensors:  # first-use order, so buffer indices follow the op order
        r, off = resolve(name)
        members.setdefault(r, []).append((tensors[name], off))
    buffers, placement = [], {}
    for index, group in enumerate(members.values()):
        shift = -min(off for _, off in group)
        group = [(t, off + shift) for t, off in group]
        b_first = min(first[t.name] for t, _ in group)
        b_last = max(last[t.name] for t, _ in group)
        extent = [0] * (b_last - b_first + 1)
        for t, off in group:
            end = off + t.size
            for s in range(first[t.name] - b_first, last[t.name] - b_first + 1):
                if end > extent[s]:
                    extent[s] = end
            placement[t.name] = (index, off)
        buffers.append(Buffer(index, group, b_first, b_last, extent))
    return buffers, placement
