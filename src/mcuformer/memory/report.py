"""``memory_report``: everything the memory model knows about one subnet on one board.

Peak SRAM is the planned arena for the chosen techniques and schedule (the smallest arena, or the
fastest schedule that fits the board: ``schedule="fastest"``, what the exporter uses); beside it the
other schedule's arena and predicted instructions (the latency model), the lower bound of that op
order, the layer-wise baseline (techniques off, TensorFlow Lite Micro's greedy-by-size packing),
the official code's one-line formula, flash by kind, each technique's effect, whether the subnet
fits the board and which budget binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mcuformer.memory.boards import KIB, Board, get_board
from mcuformer.memory.latency import predicted_instructions
from mcuformer.memory.lifetimes import analyse
from mcuformer.memory.ops import Op, code_bytes, unique_params
from mcuformer.memory.planner import ArenaPlan, greedy_by_size, plan_arena
from mcuformer.memory.schedule import ALL, build_ops, section_techniques
from mcuformer.memory.techniques import TECHNIQUES, Techniques
from mcuformer.space import Arch

FLASH_KINDS = ("weight", "bias", "requant", "norm", "embedding", "lut")


def official_formula_bytes(arch: Arch) -> float:
    """The official code's SRAM figure, ``E*((N+1)*(1+m) + E*m*r)`` with N = (img/p)^2 as a float and
    m the largest MLP ratio. It counts x and one MLP hidden matrix plus a weight-sized term, and
    ignores attention and the input image; (img/p)^2 also undercounts padded grids (p 28, 32)."""
    e, m = arch.embed_dim, max(arch.mlp_ratio)
    n = (arch.img_size / arch.patch_size) ** 2 if arch.stem == "patch" else arch.num_patches
    return e * ((n + 1) * (1 + m) + e * m * arch.rank_ratio)


def flash_breakdown(ops: list[Op]) -> dict[str, int]:
    """Flash bytes by kind of constant (each array 4-byte aligned), plus the code estimate."""
    out = dict.fromkeys(FLASH_KINDS, 0)
    for p in unique_params(ops).values():
        out[p.kind] += p.size
    out["code"] = code_bytes(len(ops))
    return out


@dataclass
class MemoryReport:
    arch: Arch
    board: Board
    techniques: Techniques
    plan: ArenaPlan
    baseline: ArenaPlan
    flash: dict[str, int]
    ablation: dict[str, dict[str, int] | int]
    allow_external_flash: bool = True
    sections: dict[str, Techniques] = field(default_factory=dict)
    schedule: str = "smallest"  # which schedule ``plan`` is: "smallest" (arena) or "fastest" (that fits)
    smallest: ArenaPlan | None = None  # the smallest-arena schedule's plan (the same as plan when chosen)
    fastest: ArenaPlan | None = None  # the fastest schedule that fits the board's arena budget

    # ---- speed (the latency model: QEMU instruction counts on the Cortex-M7, not cycles) ----
    @property
    def predicted_instructions(self) -> float:
        return predicted_instructions(self.ops)

    def schedules(self) -> dict[str, dict]:
        """Arena bytes, predicted instructions and MACs of the smallest-arena and the fastest schedule."""
        out = {}
        for name, plan in (("smallest", self.smallest), ("fastest", self.fastest)):
            if plan is not None:
                out[name] = {"arena_bytes": plan.arena_bytes, "predicted_instructions": round(predicted_instructions(
                    plan.ops)), "macs": sum(op.macs for op in plan.ops), "num_ops": len(plan.ops)}
        return out

    # ---- SRAM ----
    @property
    def ops(self) -> list[Op]:
        return self.plan.ops

    @property
    def peak_sram_bytes(self) -> int:
        return self.plan.arena_bytes

    @property
    def lower_bound_bytes(self) -> int:
        return self.plan.lower_bound_bytes

    @property
    def layerwise_baseline_bytes(self) -> int:
        return self.baseline.arena_bytes

    @property
    def official_formula_bytes(self) -> int:
        return round(official_formula_bytes(self.arch))

    @property
    def macs(self) -> int:
        """int8 multiply-accumulates of one inference under this schedule (recomputation included)."""
        return sum(op.macs for op in self.ops)

    @property
    def layerwise_macs(self) -> int:
        return sum(op.macs for op in self.baseline.ops)

    @property
    def peak_op(self) -> Op:
        return self.ops[self.plan.liveness.peak_step]

    @property
    def sram_utilisation(self) -> float:
        return self.peak_sram_bytes / self.board.arena_budget_bytes

    @property
    def fits_sram(self) -> bool:
        return self.peak_sram_bytes <= self.board.arena_budget_bytes

    # ---- flash ----
    @property
    def flash_bytes(self) -> int:
        return sum(self.flash.values())

    @property
    def flash_location(self) -> str:
        """'internal', 'external' (code in internal flash, all constants memory-mapped from the
        board's external flash), or 'none' (does not fit)."""
        if self.flash_bytes <= self.board.flash_bytes:
            return "internal"
        constants = self.flash_bytes - self.flash["code"]
        if (self.allow_external_flash and self.flash["code"] <= self.board.flash_bytes
                and 0 < constants <= self.board.external_flash_bytes):
            return "external"
        return "none"

    @property
    def flash_utilisation(self) -> float:
        if self.flash_location == "external":
            return max(self.flash["code"] / self.board.flash_bytes,
                       (self.flash_bytes - self.flash["code"]) / self.board.external_flash_bytes)
        return self.flash_bytes / self.board.flash_bytes

    @property
    def fits_flash(self) -> bool:
        return self.flash_location != "none"

    @property
    def fits(self) -> bool:
        return self.fits_sram and self.fits_flash

    @property
    def binding(self) -> str:
        """The budget closest to (or furthest past) its limit."""
        return "sram" if self.sram_utilisation >= self.flash_utilisation else "flash"

    # ---- output ----
    def profile(self) -> list[dict]:
        """Per op: bytes live, scratch bytes, and flash bytes of the parameters it is first to read."""
        live = self.plan.liveness.live_bytes
        seen: set[str] = set()
        rows = []
        for i, op in enumerate(self.ops):
            new = [p for p in op.params if p.name not in seen]
            seen.update(p.name for p in new)
            rows.append({"index": i, "op": op.name, "kernel": op.kernel, "live_bytes": live[i],
                         "scratch_bytes": sum(t.size for t in op.scratch), "flash_bytes": sum(p.size for p in new)})
        return rows

    def to_dict(self, with_profile: bool = True) -> dict:
        peak = self.peak_op
        d = {
            "arch": self.arch.to_dict(),
            "board": self.board.to_dict(),
            "techniques": self.techniques.to_dict(),
            "section_techniques": {k: list(v.enabled()) for k, v in self.sections.items()},
            "peak_sram_bytes": self.peak_sram_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "layerwise_baseline_bytes": self.layerwise_baseline_bytes,
            "official_formula_bytes": self.official_formula_bytes,
            "planner_strategy": self.plan.strategy,
            "arena_budget_bytes": self.board.arena_budget_bytes,
            "sram_utilisation": round(self.sram_utilisation, 4),
            "fits_sram": self.fits_sram,
            "flash_bytes": self.flash_bytes,
            "flash_breakdown": dict(self.flash),
            "flash_location": self.flash_location,
            "flash_utilisation": round(self.flash_utilisation, 4),
            "fits_flash": self.fits_flash,
            "fits": self.fits,
            "binding": self.binding,
            "peak_op": {"index": self.plan.liveness.peak_step, "name": peak.name, "kernel": peak.kernel},
            "ablation": self.ablation,
            "num_ops": len(self.ops),
            "macs": self.macs,
            "layerwise_macs": self.layerwise_macs,
            "schedule": self.schedule,
            "predicted_instructions": round(self.predicted_instructions),
            "schedules": self.schedules(),
        }
        if with_profile:
            d["profile"] = self.profile()
        return d

    def format(self) -> str:
        b, a = self.board, self.arch
        kb = lambda n: f"{n:>12,} B  {n / KIB:8.1f} KB"  # noqa: E731
        ext = f" + {b.external_flash_bytes // KIB:,} KB external" if b.external_flash_bytes else ""
        peak = self.peak_op
        lines = [
            f"arch   {a.short()}  ({a.img_size} px, {a.num_tokens} tokens, {a.num_params():,} params)",
            f"board  {b.name}: SRAM {b.sram_bytes // KIB} KB (arena budget {b.arena_budget_bytes / KIB:g} KB after "
            f"{b.reserve_bytes / KIB:g} KB stack+runtime reserve), flash {b.flash_bytes // KIB:,} KB{ext}",
            f"techniques: {self.techniques.label()}  (used per section: "
            + ", ".join(f"{k} {v.label()}" for k, v in _runs(self.sections)) + ")",
            "",
            f"peak SRAM (planned arena)   {kb(self.peak_sram_bytes)}  at op {self.plan.liveness.peak_step} "
            f"{peak.name} ({peak.kernel})",
            f"lower bound (this op order) {kb(self.lower_bound_bytes)}",
            f"layer-wise baseline (TFLM)  {kb(self.layerwise_baseline_bytes)}",
            f"official formula            {kb(self.official_formula_bytes)}  (E((N+1)(1+m)+E m r): no attention, "
            f"no image)",
            f"int8 MACs                   {self.macs:>12,}     ({100 * (self.macs / self.layerwise_macs - 1):+.1f}% vs "
            f"layer-wise: recomputation in fused kernels)",
            *self._schedule_lines(kb),
            f"flash                       {kb(self.flash_bytes)}  ("
            + ", ".join(f"{k} {v / KIB:,.1f}" for k, v in self.flash.items() if v) + " KB; code is an estimate)",
            "",
            f"SRAM  {'fits' if self.fits_sram else 'DOES NOT FIT'}: {100 * self.sram_utilisation:.1f}% of the arena budget",
            f"flash {self._flash_sentence()}",
            f"binding budget: {self.binding}" + ("" if self.fits else "  -> does not fit this board"),
            "",
            "technique                        planned peak",
        ]
        ab = self.ablation
        rows = [("none", ab["none"])] + [(f"{t} alone", ab["alone"][t]) for t in TECHNIQUES]
        rows += [("all", ab["all"])] + [(f"all but {t}", ab["all_but"][t]) for t in TECHNIQUES]
        lines += [f"  {name:<30} {kb(v)}" for name, v in rows]
        return "\n".join(lines)

    def _schedule_lines(self, kb) -> list[str]:
        s = self.schedules()
        lines = []
        for name, label in (("smallest", "smallest-arena schedule"), ("fastest", "fastest schedule that fits")):
            if name in s:
                chosen = "  <- chosen" if name == self.schedule else ""
                predicted = s[name]["predicted_instructions"] / 1e6
                lines.append(f"{label:<28}{kb(s[name]['arena_bytes'])}, {predicted:,.2f} M instructions predicted"
                             f"{chosen}")
        return lines

    def _flash_sentence(self) -> str:
        loc = self.flash_location
        pct = f"{100 * self.flash_utilisation:.1f}%"
        if loc == "internal":
            return f"fits internal flash: {pct}"
        if loc == "external":
            return (f"too big for internal flash; the constants that do not fit beside the code go to external "
                    f"flash ({pct} of the tighter of internal/external, counting every constant external)")
        return f"DOES NOT FIT ({pct} of internal flash" + (", external flash not allowed)" if
                                                           self.board.external_flash_bytes else ")")


def _runs(sections: dict[str, Techniques]) -> list[tuple[str, Techniques]]:
    """Consecutive sections with the same techniques, as 'blocks.0-13'."""
    out: list[tuple[list[str], Techniques]] = []
    for name, flags in sections.items():
        if out and out[-1][1] == flags and name.startswith("blocks.") and out[-1][0][-1].startswith("blocks."):
            out[-1][0].append(name)
        else:
            out.append(([name], flags))
    return [(names[0] if len(names) == 1 else f"{names[0]}-{names[-1].split('.')[-1]}", flags) for names, flags in out]


def technique_ablation(arch: Arch) -> dict:
    """Planned peak with no technique, each alone, all, and all but each."""
    peak = lambda t: plan_arena(build_ops(arch, t)).arena_bytes  # noqa: E731
    return {
        "none": peak(Techniques.none()),
        "alone": {t: peak(Techniques.only(t)) for t in TECHNIQUES},
        "all": peak(Techniques.all()),
        "all_but": {t: peak(Techniques.all().without(t)) for t in TECHNIQUES},
    }


def fastest_plan(arch: Arch, board: Board, techniques: Techniques = ALL,
                 smallest: ArenaPlan | None = None) -> tuple[ArenaPlan, int | None]:
    """The fastest schedule whose planned arena fits the board's arena budget, and the budget it was
    built with; the smallest-arena schedule (budget None) when no faster one fits."""
    smallest = smallest or plan_arena(analyse(build_ops(arch, techniques)))
    budget = board.arena_budget_bytes
    if smallest.arena_bytes <= budget:
        fast = plan_arena(analyse(build_ops(arch, techniques, budget)))
        if fast.arena_bytes <= budget:
            return fast, budget
    return smallest, None


def memory_report(arch: Arch, board: Board | str | None = None, techniques: Techniques = ALL,
                  allow_external_flash: bool = True, schedule: str = "smallest") -> MemoryReport:
    """``schedule``: "smallest" (the smallest arena) or "fastest" (the fastest schedule that fits the
    board's arena budget; the exporter's). The report holds both."""
    if schedule not in ("smallest", "fastest"):
        raise ValueError(f"schedule must be 'smallest' or 'fastest', got {schedule!r}")
    board = get_board(board) if isinstance(board, str) else (board or get_board("stm32f746"))
    smallest = plan_arena(analyse(build_ops(arch, techniques)))
    fastest, budget = fastest_plan(arch, board, techniques, smallest)
    plan = fastest if schedule == "fastest" else smallest
    baseline = greedy_by_size(build_ops(arch, Techniques.none()))
    sections = section_techniques(arch, techniques, budget if schedule == "fastest" else None)
    return MemoryReport(arch, board, techniques, plan, baseline, flash_breakdown(plan.ops), technique_ablation(arch),
                        allow_external_flash, sections, schedule, smallest, fastest)
