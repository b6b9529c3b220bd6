"""Training targets and losses of the moment localizer (ActionFormer's recipe).

Windows are ``(start, end)`` in input steps; points and offsets as in ``LocalizerOutput``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.model import LocalizerOutput


def assign_targets(
    points: Tensor,
    strides: Tensor,
    ranges: Tensor,
    mask: Tensor,
    windows: list[Tensor],
    center_radius: float = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Label every pyramid point against the ground-truth windows of its video.

    A point is positive for a window when it lies strictly inside both the window and the centre
    region ``centre ± center_radius * stride`` (ActionFormer's centre sampling), and the longest
    distance from it to the window's boundaries is in its level's range ``[low, high)``. A point
    that fits several windows takes the shortest. Returns ``cls_target`` (B, N) float (1 for
    positives), ``reg_target`` (B, N, 2) distances to the assigned window's start and end in
    input steps (0 elsewhere), and ``positive`` (B, N) bool.
    """
    batch, n = mask.shape
    if len(windows) != batch:
        raise ValueError(f"{len(windows)} window lists for a batch of {batch}")
    cls_target = torch.zeros(batch, n, device=points.device)
    reg_target = torch.zeros(batch, n, 2, device=points.device)
    positive = torch.zeros(batch, n, dtype=torch.bool, device=points.device)
    for b, gt in enumerate(windows):
        gt = gt.to(points.device, torch.float32).reshape(-1, 2)
        if gt.shape[0] == 0:
            continue
        start, end = gt[:, 0][None], gt[:, 1][None]  # (1, G)
        pts = points[:, None]  # (N, 1)
        left, right = pts - start, end - pts  # (N, G)
        centre = 0.5 * (start + end)
        radius = center_radius * strides[:, None]
        inner_left = pts - torch.maximum(centre - radius, start)
        inner_right = torch.minimum(centre + radius, end) - pts
        inside = torch.minimum(inner_left, inner_right) > 0
        reach = torch.maximum(left, right)
        fits = (reach >= ranges[:, :1]) & (reach < ranges[:, 1:])
        ok = inside & fits & mask[b][:, None]
        lengths = (end - start).expand(n, -1).masked_fill(~ok, float("inf"))
        best_len, best = lengths.min(dim=1)
        pos = torch.isfinite(best_len)
        rows = torch.arange(n, device=points.device)
        positive[b] = pos
        cls_target[b] = pos.float()
        reg_target[b] = torch.stack([left[rows, best], right[rows, best]], dim=-1) * pos[:, None]
    return cls_target, reg_target, positive


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Focal loss (Lin et al. 2017) summed over the (masked) points and divided by the number of
    positive targets (at least 1)."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    positives = targets > 0
    if mask is not None:
        loss = loss * mask.to(loss.dtype)
        positives = positives & mask.bool()
    return loss.sum() / positives.sum().clamp(min=1)


def diou_loss(pred_offsets: Tensor, target_offsets: Tensor, eps: float = 1e-8) -> Tensor:
    """1D distance-IoU loss between windows given as (left, right) distances from the same point,
    per window (no reduction): ``1 - IoU + (centre distance / enclosing length) ** 2``."""
    lp, rp = pred_offsets[..., 0], pred_offsets[..., 1]
    lg, rg = target_offsets[..., 0], target_offsets[..., 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    return 1 - iou + rho**2 / enclosing.clamp(min=eps) ** 2


def inside_targets(steps: int, windows: list[Tensor], device: torch.device) -> Tensor:
    """(B, T) 1.0 where step ``t``'s centre ``t + 0.5`` lies inside one of the row's windows (in steps)."""
    centres = torch.arange(steps, device=device, dtype=torch.float32) + 0.5
    out = torch.zeros(len(windows), steps, device=device)
    for b, gt in enumerate(windows):
        gt = gt.to(device, torch.float32).reshape(-1, 2)
        if len(gt):
            out[b] = ((centres[:, None] >= gt[:, 0]) & (centres[:, None] < gt[:, 1])).any(dim=1).float()
    return out


def saliency_loss(saliency: Tensor, mask: Tensor, windows: list[Tensor]) -> Tensor:
    """Mean binary cross-entropy over valid steps, positives and negatives weighted equally per row."""
    target = inside_targets(saliency.shape[1], windows, saliency.device)
    valid = mask.bool().to(saliency.dtype)
    pos = target * valid
    neg = (1 - target) * valid
    w = pos / pos.sum(1, keepdim=True).clamp(min=1) + neg / neg.sum(1, keepdim=True).clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(saliency.float(), target, reduction="none")
    return (bce * w).sum() / (2 * len(windows))


def query_contrast_loss(
    saliency: Tensor, mask: Tensor, windows: list[Tensor], groups: Tensor, tau: float = 1.0
) -> Tensor:
    """Same-video hard negatives on the saliency logits (B, T).

    Rows with the same ``groups`` id (B,) show the same video steps with different queries. For each
    step inside row ``b``'s windows, the rows of its group whose windows do not hold that step are its
    negatives: the loss is the cross-entropy of picking ``b`` among them (logits over ``tau``), averaged
    over every step that has at least one negative; 0 when none has."""
    target = inside_targets(saliency.shape[1], windows, saliency.device).bool()  # (B, T)
    valid = mask.bool()
    same = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    logits = saliency.float() / tau
    # negatives[b, r, t]: row r is a negative of row b at step t
    negatives = same[:, :, None] & ~target[None, :, :] & valid[None, :, :]
    others = logits[None, :, :].expand(len(groups), -1, -1).masked_fill(~negatives, float("-inf"))
    both = torch.cat([logits[:, None, :], others], dim=1)  # (B, 1 + B, T)
    terms = torch.logsumexp(both, dim=1) - logits  # -log softmax of the row itself
    use = target & valid & negatives.any(dim=1)
    if not bool(use.any()):
        return saliency.sum() * 0.0
    return terms[use].mean()


def localizer_loss(
    out: LocalizerOutput,
    windows: list[Tensor],
    cls_weight: float = 1.0,
    diou_weight: float = 1.0,
    l1_weight: float = 1.0,
    center_radius: float = 1.5,
    alpha: float = 0.25,
    gamma: float = 2.0,
    saliency_weight: float = 1.0,
    groups: Tensor | None = None,
    contrast_weight: float = 0.0,
    contrast_tau: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Focal loss on every valid point, plus DIoU and L1 on the stride-normalised offsets of the
    positives, each divided by the number of positives; with a saliency head, binary cross-entropy
    of every valid step against "its centre lies inside a window"; with ``groups`` and ``contrast_weight``,
    the same-video query contrast (:func:`query_contrast_loss`). Returns the total and its parts."""
    cls_target, reg_target, positive = assign_targets(
        out.points, out.strides, out.ranges, out.mask, windows, center_radius
    )
    npos = positive.sum().clamp(min=1).to(out.logits.dtype)
    cls = sigmoid_focal_loss(out.logits, cls_target, alpha, gamma, out.mask)
    pred = out.offsets[positive]
    target = reg_target[positive]
    stride = out.strides.expand_as(positive)[positive][:, None]
    diou = diou_loss(pred, target).sum() / npos
    l1 = (pred / stride - target / stride).abs().sum() / npos
    total = cls_weight * cls + diou_weight * diou + l1_weight * l1
    sal = torch.zeros((), device=out.logits.device)
    contrast = torch.zeros((), device=out.logits.device)
    if out.saliency is not None:
        step_mask = out.mask[:, : out.saliency.shape[1]]
        sal = saliency_loss(out.saliency, step_mask, windows)
        total = total + saliency_weight * sal
        if groups is not None and contrast_weight > 0:
            contrast = query_contrast_loss(out.saliency, step_mask, windows, groups, contrast_tau)
            total = total + contrast_weight * contrast
    parts = {
        "saliency": float(sal.detach()),
        "contrast": float(contrast.detach()),
        "cls": float(cls.detach()),
        "diou": float(diou.detach()),
        "l1": float(l1.detach()),
        "total": float(total.detach()),
        "positives": float(positive.sum()),
    }
    return total, parts
