"""The evolutionary search and its baselines with a fake fitness: no torch evaluation, fast."""

import pytest

from mcuformer.errors import ConfigError
from mcuformer.memory import estimate, get_board
from mcuformer.search import Budget, EvolutionConfig, EvolutionState, check_feasible, evolve
from mcuformer.search.baselines import hand_scaled, random_candidates, uniform_archs
from mcuformer.search.budget import smallest_corners
from mcuformer.search.evolution import Feasibility, Scored, rank
from mcuformer.space import SearchSpace

from conftest import CONFIGS

SPACE = SearchSpace.load([CONFIGS / "cifar10-tiny.yaml"])
TIGHT = Budget(get_board("stm32f746").with_overrides(sram_kb=22, flash_kb=96))  # arena 6 KB: binds here
CFG = EvolutionConfig(population=12, generations=5, parents=4, mutations=6, crossovers=6, seed=3)


def fake_fitness(arch):
    """Deterministic, arch-dependent, with ties (so tie-breaking is exercised too)."""
    return float(arch.num_params() % 97)


def test_every_evaluated_candidate_fits_the_budget():
    seen = []

    def score(archs):
        for a in archs:
            sram, flash = estimate(a)
            assert sram <= TIGHT.sram_bytes and flash <= TIGHT.flash_bytes, a.short()
            SPACE.check(a)
        seen.extend(archs)
        return [fake_fitness(a) for a in archs]

    state = evolve(SPACE, 10, TIGHT, score, CFG)
    assert len(seen) == len(set(seen)) == len(state.evaluated)  # each arch scored once
    assert state.rejected > 0  # the budget binds for this space: some candidates were turned away
    assert len(state.history) == CFG.generations
    best = [h["best_fitness"] for h in state.history]
    assert best == sorted(best)  # the best of all evaluated archs never gets worse
    assert state.ranked()[0].fitness == max(fake_fitness(s.arch) for s in state.evaluated)


def test_resumed_state_gives_the_same_search():
    full = evolve(SPACE, 10, TIGHT, lambda a: [fake_fitness(x) for x in a], CFG)
    saved = []
    partial_cfg = EvolutionConfig(**{**CFG.to_dict(), "generations": 2})
    evolve(SPACE, 10, TIGHT, lambda a: [fake_fitness(x) for x in a], partial_cfg,
           on_generation=lambda st: saved.append(st.to_dict({"k": 1})))
    restored = EvolutionState.from_dict(saved[0], {"k": 1}, "state")  # after generation 0 only
    resumed = evolve(SPACE, 10, TIGHT, lambda a: [fake_fitness(x) for x in a], CFG, state=restored)
    assert resumed.history == full.history
    assert [s.to_dict() for s in resumed.evaluated] == [s.to_dict() for s in full.evaluated]


def test_ranking_breaks_ties_by_flash_then_evaluation_order():
    a, b, c, d = random_candidates(SPACE, 10, Feasibility(TIGHT), 4, seed=0, max_tries=200)
    scored = [Scored(a, 70.0, 1, 500), Scored(b, 70.0, 1, 900), Scored(c, 71.0, 1, 100), Scored(d, 70.0, 1, 900)]
    assert [s.arch for s in rank(scored)] == [c, b, d, a]  # fitness first; b and d tie on flash too: b came first
    state = EvolutionState(evaluated=scored)
    assert state.ranked() == rank(scored)


def test_state_of_another_search_is_refused():
    state = evolve(SPACE, 10, TIGHT, lambda a: [0.0] * len(a), EvolutionConfig(population=4, generations=1))
    with pytest.raises(ConfigError, match="another seed"):
        EvolutionState.from_dict(state.to_dict({"seed": 1}), {"seed": 2}, "state.json")



def test_state_written_before_the_fitness_was_recorded_resumes_as_a_top1_search():
    state = evolve(SPACE, 10, TIGHT, lambda a: [0.0] * len(a), EvolutionConfig(population=4, generations=1))
    old = state.to_dict({"seed": 1})  # no "fitness" in its settings
    assert EvolutionState.from_dict(old, {"seed": 1, "fitness": "top1"}, "state.json").evaluated == state.evaluated
    with pytest.raises(ConfigError, match="another fitness .'top1', now 'loglik'"):
        EvolutionState.from_dict(old, {"seed": 1, "fitness": "loglik"}, "state.json")


def test_impossible_budget_names_the_smallest_figures():
    corners = [estimate(a) for a in smallest_corners(SPACE, 10)]
    min_sram, min_flash = min(c[0] for c in corners), min(c[1] for c in corners)
    assert (min_sram, min_flash) == (3200, 45544)  # at different patch sizes: not space.smallest() alone
    arena_1kb = Budget(get_board("stm32f746").with_overrides(sram_kb=17))
    with pytest.raises(ConfigError, match=r"SRAM budget 1 KB \(arena\) is below the smallest subnet's 3.125 KB"):
        check_feasible(SPACE, arena_1kb, 10)
    tiny_flash = Budget(get_board("stm32f746").with_overrides(flash_kb=44))
    with pytest.raises(ConfigError, match=r"flash budget 44 KB is below the smallest subnet's .*\(45544 B\)"):
        check_feasible(SPACE, tiny_flash, 10)
    check_feasible(SPACE, Budget(get_board("stm32f746").with_overrides(sram_kb=16 + 3200 / 1024)), 10)  # exact fit


def test_random_search_draws_distinct_feasible_archs():
    feasible = Feasibility(TIGHT)
    archs = random_candidates(SPACE, 10, feasible, 40, seed=0)
    assert len(archs) == len(set(archs)) == 40
    assert all(TIGHT.fits(a) for a in archs)
    assert archs == random_candidates(SPACE, 10, Feasibility(TIGHT), 40, seed=0)


def test_hand_scaled_is_the_largest_uniform_subnet_that_fits():
    feasible = Feasibility(TIGHT)
    hand = hand_scaled(SPACE, 10, feasible)
    uniform = uniform_archs(SPACE, 10)
    assert len(set(hand.num_heads)) == 1 and len(set(hand.mlp_ratio)) == 1
    assert TIGHT.fits(hand)
    before = uniform[:uniform.index(hand)]
    assert before and not any(TIGHT.fits(a) for a in before)
    loose = Budget(get_board("stm32f746"))
    assert hand_scaled(SPACE, 10, Feasibility(loose)) == SPACE.largest(10)  # nothing binds at 320 KB / 1 MB


def test_config_rejects_bad_settings():
    with pytest.raises(ConfigError, match="m_prob"):
        EvolutionConfig(m_prob=1.5)
    with pytest.raises(ConfigError, match="population"):
        EvolutionConfig(population=0)
