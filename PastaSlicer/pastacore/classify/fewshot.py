"""Few-shot heads on PASTA features, with honest stratified k-fold cross-validation.

For a user with 10-50 labelled cases: a logistic regression (``linear``, L2-regularised,
full-batch L-BFGS, convex so the result does not depend on the seed) or PASTA's MLP head
shape (``mlp``, Adam). Features are standardised with the mean and SD of the training part
only; classes are weighted to balance them. Metrics per fold: accuracy and ROC AUC (binary:
Mann-Whitney; several classes: the mean of one-vs-rest AUCs), reported as mean and SD
across folds, plus the same metrics pooled over all out-of-fold predictions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from .groups import OutputGroup
from .heads import Head, build_module

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..progress import Progress


DEFAULT_L2 = 1.0
MLP_EPOCHS = 200
MLP_LR = 1e-3


# --- metrics ---------------------------------------------------------------------------------


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan when one class is absent."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, bool)
    scores = np.asarray(scores, float)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUC of class 1, or the macro one-vs-rest AUC for more classes."""
    y = np.asarray(y, int)
    proba = np.asarray(proba, float)
    if proba.shape[1] == 2:
        return roc_auc(y == 1, proba[:, 1])
    values = [roc_auc(y == c, proba[:, c]) for c in range(proba.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(np.argmax(proba, axis=1) == np.asarray(y, int)))


# --- folds -----------------------------------------------------------------------------------


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> list:
    """Test indices of each fold; every class is spread over the folds as evenly as possible."""
    y = np.asarray(y, int)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(y), int)
    offset = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # continue round-robin so fold sizes stay balanced
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def usable_folds(y: np.ndarray, folds: int) -> tuple:
    """``(folds, note)``: fewer folds when a class has fewer cases than folds."""
    counts = np.bincount(np.asarray(y, int))
    smallest = int(counts[counts > 0].min())
    if (counts > 0).sum() < 2:
        raise PastaError("the labels hold a single class; a classifier needs at least two")
    if smallest < 2:
        raise PastaError(f"every class needs at least 2 labelled cases for cross-validation (smallest class: {smallest})")
    if folds < 2:
        raise PastaError("cross-validation needs at least 2 folds")
    if smallest < folds:
        return smallest, (
            f"{folds} folds asked, but the smallest class has {smallest} cases: used {smallest}-fold cross-validation"
        )
    return folds, ""


# --- training --------------------------------------------------------------------------------


def fit_head(
    features: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    kind: str = "linear",
    l2: float = DEFAULT_L2,
    seed: int = 0,
    group_name: str = "label",
    name: str = "few-shot head",
    epochs: int = MLP_EPOCHS,
) -> Head:
    """Train a head on ``features`` (N, C) with integer labels ``y`` (indices into ``classes``)."""
    import torch

    x = np.asarray(features, np.float32)
    y = np.asarray(y, int)
    if x.ndim != 2 or len(x) != len(y):
        raise PastaError(f"features {x.shape} and labels ({len(y)}) do not match")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    xs = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y).long()
    n_classes = len(classes)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = torch.tensor(np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0), dtype=torch.float32)

    generator_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these matrices are tiny: threads only add overhead
    torch.manual_seed(seed)
    try:
        module = build_module(kind, x.shape[1], n_classes)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        if kind == "linear":
            layer = module.head[0]
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
            optimizer = torch.optim.LBFGS(
                module.parameters(),
                lr=1.0,
                max_iter=500,
                history_size=20,
                tolerance_grad=1e-6,
                tolerance_change=1e-9,
                line_search_fn="strong_wolfe",
            )

            def closure():
                optimizer.zero_grad()
                loss = loss_fn(module.head(xs), yt) + l2 / (2 * len(y)) * layer.weight.pow(2).sum()
                loss.backward()
                return loss

            optimizer.step(closure)
        else:
            optimizer = torch.optim.Adam(module.parameters(), lr=MLP_LR, weight_decay=l2 * 1e-3)
            for _ in range(int(epochs)):
                optimizer.zero_grad()
                loss = loss_fn(module.head(xs), yt)
                loss.backward()
                optimizer.step()
    finally:
        torch.random.set_rng_state(generator_state)
        torch.set_num_threads(threads)
    module.eval()
    group = OutputGroup(group_name, tuple(str(c) for c in classes))
    return Head(module, kind, x.shape[1], (group,), mean.astype(np.float32), std, name)


def cross_validate(
    features: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    kind: str = "linear",
    l2: float = DEFAULT_L2,
    progress: Progress | None = None,
) -> dict:
    """Stratified k-fold metrics; the head of each fold sees only its training part."""
    x = np.asarray(features, np.float32)
    y = np.asarray(y, int)
    folds, note = usable_folds(y, folds)
    splits = stratified_folds(y, folds, seed)
    oof = np.zeros((len(y), len(classes)))
    per_fold = []
    for f, test in enumerate(splits):
        train = np.setdiff1d(np.arange(len(y)), test)
        head = fit_head(x[train], y[train], classes, kind, l2, seed + f)
        proba = head.probabilities(x[test])[0][1]
        oof[test] = proba
        per_fold.append({"fold": f, "n_test": int(len(test)), "accuracy": accuracy(y[test], proba), "auc": auc(y[test], proba)})
        if progress:
            progress((f + 1) / folds, f"fold {f + 1}/{folds}")

    def summary(key):
        values = np.array([p[key] for p in per_fold], float)
        values = values[~np.isnan(values)]
        if not len(values):
            return {"mean": None, "sd": None}
        return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}

    return {
        "folds": folds,
        "seed": seed,
        "kind": kind,
        "l2": l2,
        "n_cases": int(len(y)),
        "class_counts": {str(c): int((y == n).sum()) for n, c in enumerate(classes)},
        "accuracy": summary("accuracy"),
        "auc": summary("auc"),
        "pooled": {"accuracy": accuracy(y, oof), "auc": auc(y, oof)},
        "per_fold": per_fold,
        "note": note,
        "auc_definition": "ROC AUC of the second class" if len(classes) == 2 else "mean one-vs-rest ROC AUC",
    }


def encode_labels(values: Sequence[str]) -> tuple:
    """``(classes, codes)``: classes sorted (numerically when every label is a number)."""
    values = [str(v).strip() for v in values]
    unique = sorted(set(values))
    try:
        unique = sorted(unique, key=float)
    except ValueError:
        pass
    index = {c: n for n, c in enumerate(unique)}
    return unique, np.array([index[v] for v in values], int)
