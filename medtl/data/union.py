"""The leave-target-out MedMNIST union with the dataset-transferability study's
multi-hot label layout (spec §4.2)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from . import catalog
from .imageset import MULTI_LABEL, ImageSet

#: The study's dataset order; the organ datasets share one block placed last.
UNION_ORDER: tuple[str, ...] = (
    "chestmnist", "pneumoniamnist", "pathmnist", "dermamnist", "octmnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)
ORGANS: tuple[str, ...] = ("organamnist", "organcmnist", "organsmnist")
CHEST_NO_FINDING = 14  # chest's extra slot, set when none of its 14 findings is positive
CHEST_PNEUMONIA = 6  # chest's "pneumonia" finding


def union_layout(target: str | None) -> pd.DataFrame:
    """The multi-hot label table of the union that leaves ``target`` out.

    One row per (dataset, class) with its ``slot`` in the multi-hot vector: chest takes 15
    slots (14 findings + "no finding"); pneumonia maps into chest's slots (normal → 14,
    pneumonia → 6) when chest is in the union, else gets its own 2-slot block; path, derma,
    oct, retina, breast, blood and tissue get consecutive blocks; the three organ datasets
    share one 11-slot block placed last. The slot count is 69 when the target is pneumonia
    or an organ dataset, 56 when it is chest, and 69 − C_target otherwise.
    ``target=None`` gives the layout of all 12 datasets (69 slots).
    """
    if target is not None:
        target = catalog.check_flag(target)
    members = [f for f in UNION_ORDER if f != target]
    rows, slot = [], 0
    for flag in members:
        names = catalog.label_names(flag)
        if flag in ORGANS:
            continue
        if flag == "chestmnist":
            rows += [(flag, i, name, slot + i, name) for i, name in enumerate(names)]
            rows.append((flag, -1, "no finding", slot + CHEST_NO_FINDING, "chest: no finding"))
            slot += 15
        elif flag == "pneumoniamnist" and "chestmnist" in members:
            rows.append((flag, 0, names[0], CHEST_NO_FINDING, "chest: no finding"))
            rows.append((flag, 1, names[1], CHEST_PNEUMONIA, catalog.label_names("chestmnist")[6]))
        else:
            rows += [(flag, i, name, slot + i, f"{flag}: {name}") for i, name in enumerate(names)]
            slot += len(names)
    organs = [f for f in members if f in ORGANS]
    for flag in organs:
        rows += [(flag, i, name, slot + i, f"organ: {name}") for i, name in enumerate(catalog.label_names(flag))]
    if organs:
        slot += 11
    table = pd.DataFrame(rows, columns=["dataset", "class", "class_name", "slot", "slot_name"])
    table.attrs["n_slots"] = slot
    return table


def leave_target_out(
    target: str | None,
    split: str = "train",
    size: int = 28,
    root: str | os.PathLike | None = None,
    sources: Sequence[str] | None = None,
    verify: bool = True,
) -> ImageSet:
    """The union of the other MedMNIST datasets' ``split`` with the study's multi-hot
    labels (:func:`union_layout`), for pre-training a leave-target-out source.

    The slot layout is always the spec's layout for ``target`` (69 / 56 / 69 − C slots), so
    a model trained on a partial union has the study's head size. Images come from
    ``sources`` if given, else from every member whose file is present under the data root
    (a warning names the absent ones). Grey images are replicated to 3 channels.
    ``meta["source"]`` holds each image's dataset name; ``meta["layout"]`` the label table.
    """
    layout = union_layout(target)
    members = list(layout["dataset"].unique())
    if sources is None:
        present = set(catalog.available(root, size))
        sources = [f for f in members if f in present]
        absent = [f for f in members if f not in present]
        if absent:
            warnings.warn(
                f"leave_target_out({target!r}): no {size} px file for {absent} under "
                f"{catalog.resolve_root(root)}; the union is built from {sources} only",
                stacklevel=2,
            )
    else:
        sources = [catalog.check_flag(f) for f in sources]
        bad = [f for f in sources if f not in members]
        if bad:
            raise ValueError(f"leave_target_out({target!r}): {bad} cannot be sources (valid: {members})")
    if not sources:
        raise FileNotFoundError(
            f"leave_target_out({target!r}): none of {members} is present at {size} px under "
            f"{catalog.resolve_root(root)}"
        )
    n_slots = layout.attrs["n_slots"]
    images, labels, origin = [], [], []
    for flag in sources:
        part = catalog.load(flag, split, size, root, verify=verify)
        slots = layout[layout.dataset == flag].sort_values("class")
        multi = torch.zeros(len(part), n_slots)
        if part.is_multilabel:  # chest: findings 0..13 in place, slot 14 when none is set
            table = slots[slots["class"] >= 0]
            multi[:, torch.as_tensor(table.slot.to_numpy(copy=True))] = part.labels
            multi[:, CHEST_NO_FINDING] = (part.labels.sum(1) == 0).float()
        else:
            lookup = torch.as_tensor(slots.slot.to_numpy(copy=True))
            multi[torch.arange(len(part)), lookup[part.labels]] = 1.0
        img = part.images.expand(-1, 3, -1, -1) if part.n_channels == 1 else part.images
        images.append(img)
        labels.append(multi)
        origin.append(np.full(len(part), flag))
    slot_names = layout.drop_duplicates("slot").sort_values("slot").slot_name.tolist()
    return ImageSet(
        images=torch.cat(images).contiguous(),
        labels=torch.cat(labels),
        task=MULTI_LABEL,
        label_names=slot_names,
        name=f"lto-{target}/{split}" if target else f"medmnist-union/{split}",
        meta={"target": target, "sources": list(sources), "split": split, "size": size,
              "source": np.concatenate(origin), "layout": layout},
    )
