"""FU, the backward half of LP×FU, and its all-triplets margin loss, plus the LP×FU
combination (Juodelyte et al., arXiv 2412.20172; spec §2.2–2.3)."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import runtime
from .metrics import minmax
from .registry import register_metric


def _unit_distances(embeddings: torch.Tensor, labels: torch.Tensor):
    """Pairwise Euclidean distances of the L2-normalised embeddings (B×B, from their Gram
    matrix: ‖a − b‖² = 2 − 2 a·b; a zero distance gets +1e-12 under the root so its
    gradient is finite) and the positive/negative masks."""
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be B×D with B labels, got {tuple(embeddings.shape)} and {len(labels)}")
    e = nn.functional.normalize(embeddings, p=2, dim=1)
    sq = (2.0 - 2.0 * e @ e.T).clamp_min(0)  # ‖a − b‖² of unit vectors, O(B²D) time and O(B²) memory
    dist = torch.sqrt(sq + 1e-12 * (sq == 0))
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return dist, same & ~eye, ~same


def triplet_margin_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.05,
                        method: str = "sorted", chunk: int = 32) -> torch.Tensor:
    """Mean over active triplets of max(0, ‖ê_a − ê_p‖ − ‖ê_a − ê_n‖ + margin), over all
    triplets (a, p, n) of the batch with y_a = y_p, a ≠ p, y_n ≠ y_a, ê = e/‖e‖; "active"
    means a positive loss (pytorch-metric-learning's TripletMarginLoss defaults with its
    AvgNonZeroReducer). A batch without active triplets gives 0 (still in the graph).

    ``method="sorted"`` (default) is exact in O(B² log B) time and O(B²) memory. With
    d_ap, d_an the anchor's positive and negative distances, triplet (a, p, n) is active iff
    d_an < d_ap + m. Per anchor, sort the negatives' distances; for each positive,
    c_ap = #{n : d_an < d_ap + m} (a binary search) and the active negatives' distance sum
    is a prefix sum; symmetrically w_an = #{p : d_ap > d_an − m}. Then

        Σ_active (d_ap − d_an + m) = Σ_ap c_ap (d_ap + m) − Σ_an w_an d_an,
        count = Σ_ap c_ap,

    and since the counts are locally constant in the distances, back-propagating the
    right-hand side with detached counts gives the exact gradient.
    ``method="triplets"`` enumerates the B³ triplets (``chunk`` anchors at a time,
    O(chunk·B²) memory): the reference the sorted form is tested against.

    Shapes: embeddings ``B×D``, labels ``B``.
    """
    if method not in ("sorted", "triplets"):
        raise ValueError(f"method must be 'sorted' or 'triplets', got {method!r}")
    dist, pos_mask, neg_mask = _unit_distances(embeddings, labels)
    if method == "triplets":
        total = embeddings.new_zeros(())
        count = 0
        for start in range(0, len(labels), chunk):
            a = slice(start, start + chunk)
            valid = pos_mask[a].unsqueeze(2) & neg_mask[a].unsqueeze(1)
            loss = torch.relu(dist[a].unsqueeze(2) - dist[a].unsqueeze(1) + margin) * valid
            total = total + loss.sum()
            count += int((loss > 0).sum())
        return total / count if count else total * 0.0
    with torch.no_grad():
        d = dist.detach()
        inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
        neg_sorted = torch.where(neg_mask, d, inf).sort(dim=1).values
        pos_sorted = torch.where(pos_mask, d, inf).sort(dim=1).values
        n_pos = pos_mask.sum(1, keepdim=True)
        # c_ap: negatives strictly closer than d_ap + m (left search: entries < value)
        c = torch.searchsorted(neg_sorted, (d + margin).contiguous(), right=False) * pos_mask
        # w_an: positives with d_ap > d_an − m, i.e. n_pos − #{p : d_ap <= d_an − m}
        w = (n_pos - torch.searchsorted(pos_sorted, (d - margin).contiguous(), right=True)) * neg_mask
        count = int(c.sum())
    if count == 0:
        return (dist * 0.0).sum()
    c, w = c.to(dist.dtype), w.to(dist.dtype)
    total = (c * (dist + margin)).sum() - (w * dist).sum()
    return total / count


@register_metric(kind="model", label="FU", citation="Juodelyte et al., arXiv 2412.20172",
                 description="feature update: gradient norm of an early block's conv relative to the stem's under a triplet loss")
def fu(model: nn.Module, data, layers: tuple[str, str] | None = None, batch_size: int | None = None,
       margin: float = 0.05, device=None, seed: int = 42, order: str = "stratified", **batch) -> float:
    """FU: how strongly the target would still move the early layers.

    The source head (the architecture table's ``feature_node``) becomes Identity, the model
    is put in eval mode, and the target's training images go through it in batches of
    B = ⌊N/6⌋ (plus the remainder). With ``order="stratified"`` (default) the batches are cut
    from :func:`medtl.data.stratified_order` under ``seed`` with same-class pairs
    (``group=2``), so every batch holds the classes in proportion, positives included even
    when B is small, and the score does not depend on the order of the target's images (a
    class-sorted folder gives the same FU as a shuffled one). ``order="stored"`` is the
    study's: consecutive batches of the stored order (spec §2.2; the official MedMNIST files
    are stored shuffled, a user's folder usually is not: then no batch holds two classes and
    FU is undefined). For each batch b, the all-triplets margin
    loss (:func:`triplet_margin_loss`, margin 0.05) is back-propagated and the Frobenius
    norms of the two monitored weight gradients are recorded (only those two are computed:
    FU's private copy of the model freezes every other weight, which leaves both gradients
    as they are and saves about a third of the backward pass):

        FU = mean_b ‖∂L_b/∂W₂‖_F / mean_b ‖∂L_b/∂W₁‖_F,

    W₁ the stem convolution and W₂ the first convolution of the first block (the table's
    ``fu_layers``).

    Args:
        model: a model built by :func:`medtl.models.create` (its table row gives the layers).
        data: the target ImageSet (training subset).
        layers: override the (W₁, W₂) module paths.
        batch: loader settings (normalize, image_size, channels); default from the model.
    """
    from ..data import ImageSet, loader
    from ..models import arch_of, freeze, get_module, set_module

    if not isinstance(model, nn.Module):
        raise TypeError(f"fu needs a torch model, got {type(model).__name__}")
    if not isinstance(data, ImageSet) or data.is_multilabel:
        raise ValueError("fu needs a single-label target ImageSet (the triplet loss groups images by class)")
    a = arch_of(model)
    w1_name, w2_name = layers or a.fu_layers
    dev = runtime.device(device)
    net = copy.deepcopy(model).to(dev).eval()
    set_module(net, a.feature_node, nn.Identity())
    w1, w2 = get_module(net, w1_name).weight, get_module(net, w2_name).weight
    # the other weights' gradients are never read: not computed (about a third of the backward
    # pass); W₁ and W₂ keep the model's own flags
    freeze(net, except_layers=(w1_name, w2_name))
    if order not in ("stratified", "stored"):
        raise ValueError(f"order must be 'stratified' or 'stored', got {order!r}")
    if order == "stratified":
        from ..data import stratified_order

        data = data.subset(stratified_order(data, seed, group=2), name=data.name)
    n = len(data)
    bs = batch_size or max(n // 6, 2)
    settings = runtime.batch_settings(model, data, **batch)
    runtime.check_input_size(model, settings["image_size"])
    g1, g2 = [], []
    with runtime.seeded(seed), runtime.cudnn_disabled():
        for x, y in loader(data, batch_size=bs, device=dev, **settings):
            net.zero_grad(set_to_none=True)
            loss = triplet_margin_loss(net(x).float(), y)
            if loss.requires_grad:
                loss.backward()
            g1.append(float(w1.grad.norm()) if w1.grad is not None else 0.0)
            g2.append(float(w2.grad.norm()) if w2.grad is not None else 0.0)
    if not np.mean(g1) > 0:
        raise ValueError(f"FU is undefined on {data.name!r} ({n} images, batches of {bs}, order={order!r}): the stem "
                         "received no gradient (no active triplet in any batch"
                         + (": with order='stored' a class-sorted target puts one class in each batch)"
                            if order == "stored" else ")"))
    return float(np.mean(g2) / np.mean(g1))


@register_metric(kind="combination", requires=("lp", "fu"), variants=("official", "study"), label="LP×FU",
                 citation="Juodelyte et al., arXiv 2412.20172",
                 description="the study's metric: LP and FU min–max normalised over the candidates, multiplied")
def lp_fu(lp_scores, fu_scores, reverse: bool = False, exclude: str | Iterable[str] | None = None,
          variant: str = "official") -> pd.Series | pd.DataFrame:
    """LP×FU: per target, min–max normalise LP and FU across the candidate sources and
    multiply,

        Score(s) = LP̃(s) · FŨ(s)              (same-domain sources, scenario A),
        Score(s) = (1 − LP̃(s)) · (1 − FŨ(s))  (``reverse=True``, the cross-domain direction
                                               the study found for scenario B).

    Args:
        lp_scores, fu_scores: a Series (source → score) for one target, or DataFrames with
            sources as rows and targets as columns.
        exclude: source(s) left out of the candidates (the target itself); for DataFrames,
            every source named like a target column is excluded from that column.
        variant: ``"study"`` reproduces the study's quirk of normalising FU over all sources
            including the excluded one (its published numbers need it).

    Returns:
        Scores with NaN for excluded sources, shaped like the inputs.
    """
    if variant not in ("official", "study"):
        raise ValueError(f"variant must be 'official' or 'study', got {variant!r}")
    if isinstance(lp_scores, pd.DataFrame):
        out = {}
        for target in lp_scores.columns:
            if target not in fu_scores.columns:
                raise ValueError(f"target {target!r} has LP scores but no FU scores")
            ex = target if target in lp_scores.index else None
            out[target] = lp_fu(lp_scores[target], fu_scores[target], reverse, ex, variant)
        return pd.DataFrame(out)
    lp_s, fu_s = pd.Series(lp_scores, dtype=float), pd.Series(fu_scores, dtype=float)
    if set(lp_s.index) != set(fu_s.index):
        raise ValueError(f"LP and FU cover different sources: {sorted(set(lp_s.index) ^ set(fu_s.index))}")
    fu_s = fu_s[lp_s.index]
    excluded = {exclude} if isinstance(exclude, str) else set(exclude or ())
    cand = ~lp_s.index.isin(excluded)
    lp_n = pd.Series(np.nan, index=lp_s.index)
    lp_n[cand] = minmax(lp_s[cand].to_numpy())
    fu_n = pd.Series(np.nan, index=fu_s.index)
    if variant == "study":
        fu_n[:] = minmax(fu_s.to_numpy())
    else:
        fu_n[cand] = minmax(fu_s[cand].to_numpy())
    score = (1 - lp_n) * (1 - fu_n) if reverse else lp_n * fu_n
    score[~cand] = np.nan
    return score
