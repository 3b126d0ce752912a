"""One generation of one group of seeds: fit, sample, measure (and filter); then, per chain, the data the
next generation trains on. The loop calls these in its own process; seed workers (seed_workers.py) call
one_generation in theirs, so both compute the same rows."""

from __future__ import annotations

import math

import numpy as np

from .chains import Chain, Group, Step
from .checkpoints import save_reference
from .config import DataSection
from .datamodes import example_weights, next_data, real_count
from .detector import measure, select
from .engines import Engine, Report
from .rundir import RunDir


def sample_saved(generation: int, generations: int) -> bool:
    """Which generations keep their samples for the panes: all of short runs, snapshots of long ones."""
    return generations <= 200 or generation <= 10 or generation % 50 == 0 or generation == generations - 1


def one_generation(
    engine: Engine,
    g: Group,
    gen: int,
    data_cfg: DataSection,
    report: Report,
    rundir: RunDir,
    keep_preview: bool,
    chain: str,
) -> Step:
    """Generation gen of group g: its model, its samples (the filter's keep share when data.filter is on,
    the detector's draw when data.reweight is) and one metrics row per seed (with the detector's AUC).
    Changes nothing of g but generation 0's reference, saved once, and the detector's real features."""
    n = g.real.shape[1]
    filtering = data_cfg.filtering
    anchored = (
        {"reference": g.reference}
        if engine.train_keys.get("anchor", "none") != "none" or engine.train_keys.get("distill")
        else {}
    )
    weights = real_weights(data_cfg, g)
    weighted = {} if weights is None else {"weights": weights}
    # g.model: the previous generation's
    fitted = engine.fit(g.data, g.rngs, report, source=g.model, **anchored, **weighted)
    model = fitted.model
    drawn = math.ceil(n / data_cfg.filter_keep) if filtering else n
    generated = engine.sample(model, drawn, g.rngs, report, data=g.data)
    samples = generated.samples
    if gen == 0:
        g.reference = model
        save_reference(rundir, engine, g, chain)
    report("evaluate", 0, 1, None)
    metrics = [m | fitted.losses for m in engine.evaluate(model, samples, g.reference)]
    detecting = data_cfg.detector_auc or "detector" in (data_cfg.filter, data_cfg.reweight)
    detection = measure(engine, g, gen, samples) if detecting else None
    report("evaluate", 1, 1, None)
    if data_cfg.filter == "perplexity":  # keep the n samples the generation-0 model finds most typical
        best = np.argsort(engine.score(g.reference, samples), axis=1, kind="stable")[:, :n]
        samples = np.take_along_axis(samples, best.reshape(best.shape + (1,) * (samples.ndim - 2)), axis=1)
    if detection is not None:
        samples = select(data_cfg, samples, detection, n)
    if keep_preview:  # what the model generated (before a filter)
        rundir.save_samples(gen, generated.preview, chain)
    named = {"chain": chain} if chain else {}
    rows = [
        {**named, "seed": seed, "generation": gen, "train_size": int(g.data.shape[1]), **m}
        | ({} if detection is None else {"detector_auc": detection.auc_value(i)})
        for i, (seed, m) in enumerate(zip(g.seeds, metrics))
    ]
    return Step(model, samples, rows)


def real_weights(data_cfg: DataSection, g: Group) -> np.ndarray | None:
    """data.real_weight's per-example weights of g's training data, whose first g.real_count examples are
    real (datamodes.example_weights), or None: the unweighted fit (real_weight 0 weighs by count)."""
    n = g.data.shape[1]
    if not data_cfg.real_weight or g.real_count is None:
        return None
    return example_weights(data_cfg.real_weight, g.real_count, n, len(g.seeds))


def chain_next_data(
    ch: Chain, steps: list[Step], data_cfg: DataSection, mixed: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Each group's (training data, pool, how many of the data's first examples are real) for the next
    generation, by the data mode. mixed: the chain's samples drawn from every chain and seed (mixing.py),
    when the run mixes them; else each group's own."""
    out, start = [], 0
    for g, step in zip(ch.groups, steps):
        samples = step.samples if mixed is None else mixed[start : start + len(g.seeds)]
        start += len(g.seeds)
        data, pool = next_data(
            data_cfg.mode,
            prev=g.data,
            pool=g.pool,
            real=g.real,
            samples=samples,
            rngs=g.rngs,
            keep_fraction=data_cfg.keep_fraction,
            fresh_fraction=data_cfg.fresh_fraction,
            draw_fresh=lambda k, g=g: ch.engine.real_data(g.rngs, k),
            size=None if mixed is None else mixed.shape[1],
        )
        prev = g.data.shape[1] if g.real_count is None else g.real_count
        real = real_count(data_cfg.mode, prev, data.shape[1], data_cfg.keep_fraction, data_cfg.fresh_fraction)
        out.append((data, pool, real))
    return out
