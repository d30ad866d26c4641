"""AutoFormer's evolutionary search under a memory budget, with a resumable state.

Every generation is a pure function of (seed, generation number, archs evaluated so far), so a
search killed after generation g and resumed from its state file ends exactly where an
uninterrupted one does. Candidates are checked against the memory model before they are scored.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable

from mcuformer.errors import ConfigError
from mcuformer.search.budget import Budget
from mcuformer.space import Arch, SearchSpace
from mcuformer.utils.checks import is_finite_number

STATE_FORMAT = "mcuformer-search-state-v1"
MAX_DRAWS_PER_GENERATION = 10_000_000  # the defaults draw at most 20,000
SETTINGS_BEFORE_THEY_WERE_RECORDED = {"fitness": "top1"}  # what older state files ran with
ScoreFn = Callable[[list[Arch]], list[float]]


@dataclass
class EvolutionConfig:
    """Defaults of AutoFormer's / MCUFormer's evolution.py."""

    population: int = 50
    generations: int = 20
    parents: int = 10       # top-k of all evaluated archs that breed the next generation
    mutations: int = 25
    crossovers: int = 25
    m_prob: float = 0.2     # per layer: resample heads and MLP ratio
    s_prob: float = 0.4     # depth, embed dim, rank ratio, patch size
    seed: int = 0
    max_tries: int = 200    # draws per child before giving up on it (small or tight spaces run dry)

    def __post_init__(self):
        for k in ("population", "generations", "parents", "max_tries"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"{k} must be positive, got {getattr(self, k)}")
        for k in ("mutations", "crossovers"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k} must not be negative, got {getattr(self, k)}")
        for k in ("m_prob", "s_prob"):
            if not 0 <= getattr(self, k) <= 1:
                raise ConfigError(f"{k} must lie in [0, 1], got {getattr(self, k)}")
        draws = (self.population + self.mutations + self.crossovers) * self.max_tries
        if draws > MAX_DRAWS_PER_GENERATION:  # a tight budget can make a generation spend every one of them
            raise ConfigError(f"(population + mutations + crossovers) x max_tries is {draws:,} random draws a "
                              f"generation; at most {MAX_DRAWS_PER_GENERATION:,}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Scored:
    arch: Arch
    fitness: float
    sram: int
    flash: int

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "fitness": self.fitness, "sram": self.sram, "flash": self.flash}

    @classmethod
    def from_dict(cls, d: dict) -> "Scored":
        return cls(Arch.from_dict(d["arch"]), float(d["fitness"]), int(d["sram"]), int(d["flash"]))


def rank(scored: list[Scored]) -> list[Scored]:
    """Best first. Equal fitness goes to the subnet with more flash: a few hundred held-out images score
    top-1 in coarse steps, so ties are common, and the larger one of two equally accurate subnets uses
    the budget the board has (and the larger subnets of a supernet are the more accurate on average). Remaining ties
    keep evaluation order, so the ranking is deterministic."""
    return sorted(scored, key=lambda s: (-s.fitness, -s.flash))


@dataclass
class EvolutionState:
    generation: int = 0                                   # the next generation to evaluate
    population: list[Arch] = field(default_factory=list)  # its candidates (all feasible)
    evaluated: list[Scored] = field(default_factory=list)  # every arch scored so far, in order
    history: list[dict] = field(default_factory=list)
    rejected: int = 0                                     # candidates the memory budget turned away

    def ranked(self) -> list[Scored]:
        return rank(self.evaluated)

    def to_dict(self, settings: dict) -> dict:
        return {"format": STATE_FORMAT, "settings": settings, "generation": self.generation,
                "population": [a.to_dict() for a in self.population],
                "evaluated": [s.to_dict() for s in self.evaluated], "history": [dict(h) for h in self.history],
                "rejected": self.rejected}

    @classmethod
    def from_dict(cls, d: dict, settings: dict, where: str) -> "EvolutionState":
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            raise ConfigError(f"{where} is not a search state file ({STATE_FORMAT})")
        if not isinstance(d.get("settings"), dict):
            raise ConfigError(f"{where} is damaged: no settings")
        saved = {**SETTINGS_BEFORE_THEY_WERE_RECORDED, **d["settings"]}
        for k, v in settings.items():
            if saved.get(k) != v:
                raise ConfigError(f"{where} was written by a search with another {k} "
                                  f"({saved.get(k)!r}, now {v!r}); use another --output")
        try:
            state = cls(int(d["generation"]), [Arch.from_dict(a) for a in d["population"]],
                        [Scored.from_dict(s) for s in d["evaluated"]], list(d["history"]), int(d["rejected"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # a hand-edited or damaged file
            raise ConfigError(f"{where} is damaged ({type(e).__name__}: {str(e)[:100]}); use another --output") from None
        if state.generation < 0 or any(not math.isfinite(s.fitness) for s in state.evaluated):
            raise ConfigError(f"{where} is damaged (a negative generation or a non-finite fitness)")
        if not isinstance(d["generation"], int) or not all(map(_is_history_record, state.history)):
            raise ConfigError(f"{where} is damaged (a fractional generation or a history record without its "
                              f"figures); use another --output")
        return state


HISTORY_FIGURES = ("generation", "best_fitness", "topk_mean_fitness", "population_mean_fitness")


def _is_history_record(h) -> bool:
    """A generation's record as ``run_generation`` writes it: the figures the plots and the bar read."""
    return isinstance(h, dict) and all(is_finite_number(h.get(k)) for k in HISTORY_FIGURES)


class Feasibility:
    """Memory figures of candidates (memoised) and a count of the ones the budget rejects."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.memo: dict[Arch, tuple[int, int, bool]] = {}
        self.rejected = 0

    def measure(self, arch: Arch) -> tuple[int, int, bool]:
        if arch not in self.memo:
            self.memo[arch] = self.budget.measure(arch)
        return self.memo[arch]

    def admit(self, arch: Arch) -> bool:
        fits = self.measure(arch)[2]
        self.rejected += not fits
        return fits


def draw_unique(make: Callable[[], Arch], count: int, taken: set, feasible: Feasibility, tries: int) -> list[Arch]:
    """Up to ``count`` new feasible archs from ``make``, none in ``taken`` (which they join)."""
    out = []
    for _ in range(count):
        for _ in range(tries):
            arch = make()
            if arch not in taken and feasible.admit(arch):
                taken.add(arch)
                out.append(arch)
                break
    return out


def initial_population(space: SearchSpace, num_classes: int, cfg: EvolutionConfig, feasible: Feasibility) -> list[Arch]:
    rng = random.Random(f"{cfg.seed}:init")
    return draw_unique(lambda: space.sample(rng, num_classes), cfg.population, set(), feasible, cfg.max_tries)


def next_population(space: SearchSpace, num_classes: int, cfg: EvolutionConfig, state: EvolutionState,
                    feasible: Feasibility) -> list[Arch]:
    """Mutations and crossovers of the top-k parents, topped up with random archs; only feasible
    archs never evaluated before (AutoFormer skips visited archs too)."""
    rng = random.Random(f"{cfg.seed}:gen{state.generation}")
    parents = [s.arch for s in state.ranked()[:cfg.parents]]
    taken = {s.arch for s in state.evaluated}
    children = draw_unique(lambda: space.mutate(rng.choice(parents), rng, cfg.m_prob, cfg.s_prob),
                           cfg.mutations, taken, feasible, cfg.max_tries)
    children += draw_unique(lambda: space.crossover(rng.choice(parents), rng.choice(parents), rng),
                            cfg.crossovers, taken, feasible, cfg.max_tries)
    children += draw_unique(lambda: space.sample(rng, num_classes), cfg.population - len(children), taken,
                            feasible, cfg.max_tries)
    return children


def run_generation(state: EvolutionState, score: ScoreFn, feasible: Feasibility, cfg: EvolutionConfig) -> dict:
    """Score the current population and record the generation (the caller breeds the next one)."""
    done = {s.arch for s in state.evaluated}
    new = [a for a in state.population if a not in done]
    for arch, fit in zip(new, score(new)):
        sram, flash, fits = feasible.measure(arch)
        assert fits, f"an infeasible arch reached evaluation: {arch.short()}"
        state.evaluated.append(Scored(arch, fit, sram, flash))
    ranked = state.ranked()
    best, top = ranked[0], ranked[:cfg.parents]
    population = set(state.population)
    pop_fit = [s.fitness for s in state.evaluated if s.arch in population]
    record = {"generation": state.generation, "evaluated": len(state.evaluated), "new": len(new),
              "rejected_by_memory": state.rejected + feasible.rejected,
              "best_fitness": best.fitness, "topk_mean_fitness": sum(s.fitness for s in top) / len(top),
              "population_mean_fitness": sum(pop_fit) / max(len(pop_fit), 1),
              "best_sram": best.sram, "best_flash": best.flash, "best_arch": best.arch.short()}
    state.history.append(record)
    return record


def evolve(space: SearchSpace, num_classes: int, budget: Budget, score: ScoreFn, cfg: EvolutionConfig,
           state: EvolutionState | None = None, on_generation: Callable[[EvolutionState], None] | None = None,
           ) -> EvolutionState:
    """Run (or continue) the search; ``on_generation`` persists the state after each generation."""
    feasible = Feasibility(budget)
    if state is None:
        state = EvolutionState(population=initial_population(space, num_classes, cfg, feasible))
        if not state.population:
            raise ConfigError(f"no subnet of {cfg.max_tries} random draws met the budget {budget.label()}; "
                              "the feasible part of the space is too small to sample (raise --max-tries)")
        state.rejected, feasible.rejected = feasible.rejected, 0
    while state.generation < cfg.generations:
        run_generation(state, score, feasible, cfg)
        state.generation += 1
        if state.generation < cfg.generations:
            state.population = next_population(space, num_classes, cfg, state, feasible)
        else:
            state.population = []
        state.rejected, feasible.rejected = state.rejected + feasible.rejected, 0
        if on_generation:
            on_generation(state)
    return state
