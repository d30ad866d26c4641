"""Search stage: memory-constrained evolutionary search of a trained supernet, its baselines, and
the evolution of the search space over (rank ratio, patch size). Importing it does not import torch."""

from mcuformer.search.budget import Budget, check_feasible
from mcuformer.search.evolution import EvolutionConfig, EvolutionState, evolve
from mcuformer.search.runner import make_budget, run_search
from mcuformer.search.space_evolution import Grid, PointScore, evolve_space, fit_plane
from mcuformer.search.space_runner import SupernetPointScorer, run_space_evolution

__all__ = ["Budget", "EvolutionConfig", "EvolutionState", "Grid", "PointScore", "SupernetPointScorer", "check_feasible",
           "evolve", "evolve_space", "fit_plane", "make_budget", "run_search", "run_space_evolution"]
