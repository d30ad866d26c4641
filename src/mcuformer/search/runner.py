"""``run_search``: the whole `mcuformer search` run (load, budget check, evolution, baselines,
re-scoring on the test split, files and plots). Runs under torchrun too: every rank computes the
same candidates, the evaluation is sharded, rank 0 writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from mcuformer.errors import ConfigError, SpaceError
from mcuformer.memory import get_board
from mcuformer.search.baselines import hand_scaled, random_candidates
from mcuformer.search.budget import Budget, check_feasible
from mcuformer.search.evolution import EvolutionConfig, EvolutionState, Feasibility, Scored, evolve, rank
from mcuformer.search.plots import plot_fitness, plot_pareto
from mcuformer.utils.io import file_sha256, read_structured, write_json, write_text, write_yaml


def make_budget(board: str, sram_kb: float | None = None, flash_kb: float | None = None,
                allow_external_flash: bool = False, max_latency_ms: float | None = None) -> Budget:
    return Budget(get_board(board).with_overrides(sram_kb=sram_kb, flash_kb=flash_kb), allow_external_flash,
                  max_latency_ms)


def _sha256(path: Path) -> str:
    return file_sha256(path)[:16]


def run_search(checkpoint, output, budget: Budget, cfg: EvolutionConfig, *, data_path=None, subsplit=None,
               per_class: int = 100, heldout_limit: int = 0, test_limit: int = 0, test_top_k: int = 5,
               baselines: bool = True, batch_size: int = 500, workers: int = 2, amp: str = "auto",
               device: str = "auto", resume: bool = False, progress: bool = True,
               fitness: str = "loglik", recorded_split: bool = True) -> dict | None:
    """Search; returns the result dict on rank 0 (None on other ranks). Writes into ``output``:
    state.json (resume point), history.jsonl, best_arch.yaml, result.json, pareto.png, fitness.png.
    ``fitness``: what evolution and random search maximise on the held-out set, ``top1`` or ``loglik``
    (the mean log-likelihood of the true class). Without ``subsplit``, a supernet trained without a held-out
    split is scored on that split (when the search reads the data it trained on; ``recorded_split=False``
    skips it), else on a seeded one of ``per_class`` images per class."""
    from mcuformer.search.fitness import (FITNESS, FitnessCache, check_fitness, default_heldout_split,
                                          heldout_dataset, load_supernet, preload, resolve_search_data, test_dataset)
    from mcuformer.train.distributed import cleanup, init_distributed
    from mcuformer.train.evaluate import evaluate_archs, make_eval_loader

    check_fitness(fitness)
    output = Path(output)
    state_path = output / "state.json"
    if state_path.exists() and not resume:
        raise ConfigError(f"{output} already holds a search; pass --resume to continue it, or choose another --output")
    info = init_distributed(device)
    try:
        net = load_supernet(checkpoint, info)
        check_feasible(net.space, budget, net.num_classes)
        data = resolve_search_data(net, data_path)
        if subsplit is None and recorded_split:
            subsplit = default_heldout_split(net, data)
        heldout, heldout_source = heldout_dataset(net, data, subsplit, per_class, cfg.seed, heldout_limit)
        settings = {"checkpoint_sha256": _sha256(Path(checkpoint) if Path(checkpoint).is_file()
                                                 else Path(checkpoint) / "checkpoint.pt"),
                    "budget": budget.to_dict(), "evolution": cfg.to_dict(), "heldout": heldout_source,
                    "heldout_images": len(heldout), "fitness": fitness}
        state = None
        if state_path.exists():
            state = EvolutionState.from_dict(read_structured(state_path), settings, str(state_path))
            _check_state_archs(state, net, state_path)
        overlap = _warn_overlap(net, data, subsplit, per_class, cfg.seed, info.is_main)
        cache = FitnessCache(net.model, preload(heldout, info, batch_size, workers), info, amp, fitness)
        if state is not None:
            for s in state.evaluated:
                cache.restore(s.arch, s.fitness)

        bar = tqdm(total=cfg.generations, initial=state.generation if state else 0, desc="search",
                   unit="gen", disable=not (progress and info.is_main))

        def persist(st: EvolutionState) -> None:
            bar.update(1)
            best = st.history[-1]["best_fitness"]
            bar.set_postfix(best=f"{best:.2f}%" if fitness == "top1" else f"{best:.4f}", evaluated=len(st.evaluated))
            if info.is_main:
                write_json(state_path, st.to_dict(settings))
                write_text(output / "history.jsonl", "".join(_json_line(h) for h in st.history))

        state = evolve(net.space, net.num_classes, budget, cache.evaluate, cfg, state, persist)
        bar.close()

        ranked = state.ranked()
        finalists = {f"evolution #{i + 1}": s for i, s in enumerate(ranked[:test_top_k])}
        feasible = Feasibility(budget)
        rows_extra = {}
        if baselines:
            rnd = random_candidates(net.space, net.num_classes, feasible, len(state.evaluated), cfg.seed, cfg.max_tries)
            scored = [Scored(a, f, *feasible.measure(a)[:2]) for a, f in zip(rnd, cache.evaluate(rnd))]
            if scored:  # empty only when random draws never hit the (tiny) feasible set
                finalists["random search"] = rank(scored)[0]
                rows_extra["random search"] = {"evaluations": len(rnd)}
            hand = hand_scaled(net.space, net.num_classes, feasible)
            if hand is not None:
                finalists["hand-scaled"] = Scored(hand, cache.evaluate([hand])[0], *feasible.measure(hand)[:2])
                rows_extra["hand-scaled"] = {"evaluations": 0}
        heldout_top1 = dict(zip(finalists, cache.heldout_top1([s.arch for s in finalists.values()])))
        test = test_dataset(net, data, test_limit)
        test_accs = evaluate_archs(net.model, [s.arch for s in finalists.values()],
                                   make_eval_loader(test, info, batch_size, workers), info, amp, progress=progress)
    finally:
        cleanup(info)
    if not info.is_main:
        return None

    rows = []
    for (name, s), acc in zip(finalists.items(), test_accs):
        sram, flash, fits = budget.measure(s.arch)
        rows.append({"method": name, "heldout_top1": heldout_top1[name], "fitness": s.fitness,
                     "test_top1": round(acc.top1, 4),
                     "test_images": acc.count, "sram_bytes": sram, "flash_bytes": flash, "fits": fits,
                     "predicted_latency_ms": round(budget.latency_ms(s.arch), 3) if budget.board.clock_mhz else None,
                     "params": s.arch.num_params(), "summary": s.arch.short(), "arch": s.arch.to_dict(),
                     **rows_extra.get(name, {"evaluations": len(state.evaluated)})})
    best = rows[0]
    binding = "sram" if best["sram_bytes"] / budget.sram_bytes >= best["flash_bytes"] / budget.flash_bytes else "flash"
    result = {"budget": budget.to_dict(), "budget_label": budget.label(), "evolution": cfg.to_dict(),
              "fitness": fitness, "heldout": settings["heldout"], "heldout_images": settings["heldout_images"],
              "heldout_seen_in_training": overlap,
              "evaluations": len(state.evaluated), "rejected_by_memory": state.rejected,
              "all_subnets_fit": all(budget.measure(a)[2] for a in (s.arch for s in ranked)),
              "best_binding": binding, "rows": rows}
    best_arch = ranked[0].arch
    write_yaml(output / "best_arch.yaml", {"arch": best_arch.to_dict(), "heldout_top1": best["heldout_top1"],
                                           **({"fitness": {fitness: best["fitness"]}} if fitness != "top1" else {}),
                                           "test_top1": best["test_top1"], "sram_bytes": best["sram_bytes"],
                                           "flash_bytes": best["flash_bytes"],
                                           "predicted_latency_ms": best["predicted_latency_ms"],
                                           "budget": budget.to_dict()})
    write_json(output / "result.json", result)
    marks = {f"{r['method']} ({r['test_top1']:.1f}% test)": (r["sram_bytes"], r["fitness"])
             for r in rows if r["method"] in ("evolution #1", "random search", "hand-scaled")}
    plot_pareto(ranked, budget.sram_bytes, output / "pareto.png", budget.label(), marks, FITNESS[fitness])
    random_best = next((r["fitness"] for r in rows if r["method"] == "random search"), None)
    plot_fitness(state.history, output / "fitness.png", random_best, FITNESS[fitness])
    return result


def _warn_overlap(net, data, subsplit, per_class: int, seed: int, is_main: bool) -> int | None:
    """Warn (one stderr line) when the held-out split overlaps the supernet's training images."""
    from mcuformer.search.overlap import heldout_indices, heldout_overlap
    n, why = heldout_overlap(net.train_config, net.data_path, data,
                             heldout_indices(data, subsplit, per_class, seed))
    if is_main and n:  # None (cannot be told: another data folder, no settings) stays quiet
        print(f"mcuformer search: warning: {why}, so held-out top-1 is optimistic; train with "
              "`--exclude-split` on this sub-split (`mcuformer sub-split`) to keep them out", file=sys.stderr)
    return n


def _check_state_archs(state: EvolutionState, net, where: Path) -> None:
    """Every arch a resumed state holds lies in the supernet's space (checked before any progress bar)."""
    for arch in [*state.population, *(s.arch for s in state.evaluated)]:
        try:
            net.space.check(arch)
            if arch.num_classes != net.num_classes:
                raise SpaceError(f"num_classes is {arch.num_classes}, the supernet has {net.num_classes}")
        except SpaceError as e:
            raise ConfigError(f"{where} is damaged ({e}); use another --output") from None


def _json_line(obj) -> str:
    return json.dumps(obj) + "\n"


def format_rows(result: dict) -> str:
    lines = [f"{'method':<14} {'held-out':>9} {'test':>8} {'SRAM KB':>8} {'flash KB':>9} {'fits':>5}  subnet"]
    for r in result["rows"]:
        lines.append(f"{r['method']:<14} {r['heldout_top1']:>8.2f}% {r['test_top1']:>7.2f}% "
                     f"{r['sram_bytes'] / 1024:>8.2f} {r['flash_bytes'] / 1024:>9.2f} {str(r['fits']):>5}  {r['summary']}")
    return "\n".join(lines)
