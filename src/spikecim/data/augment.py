"""Training-time augmentation of image and event-frame batches: random crop, flip, cutout.

``data.augment`` lists the operations, applied in the order given to every training batch
(never to the test split):

- ``crop``: pad the two spatial dimensions with ``crop_padding`` zeros on each side and
  keep a window of the original size at a uniformly drawn offset (torchvision's
  ``RandomCrop(size, padding=p)``, the CIFAR recipe of He et al., CVPR 2016);
- ``flip``: mirror the last dimension with probability ½ (``RandomHorizontalFlip``);
- ``cutout``: zero a ``cutout_size``-wide square whose centre is drawn uniformly over the
  image, clipped at the borders (DeVries and Taylor 2017, ``Cutout(n_holes=1, length)``).

The SNN papers' CIFAR code (TET, SEENN) trains with ``[crop, flip]``, padding 4, and adds
cutout (length 16) for CIFAR-100. Pixels are in [0, 1], so the padding and the hole are
black, as in that code (which applies both before normalising). Event frames
``[T, C, H, W]`` are cropped, flipped and cut out alike in every frame of a sample.

Every draw comes from the generator given (the trainer's epoch generator), so a batch's
augmentation depends on the seed and the epoch only and a resumed run repeats it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["AUGMENTATIONS", "augment"]

AUGMENTATIONS = ("crop", "flip", "cutout")


def augment(
    x: torch.Tensor,
    ops: tuple[str, ...] | list[str],
    generator: torch.Generator,
    crop_padding: int = 4,
    cutout_size: int = 16,
) -> torch.Tensor:
    """``x[B, ..., H, W]`` with ``ops`` applied to each sample in order; a new tensor."""
    for op in ops:
        if op == "crop":
            x = _crop(x, crop_padding, generator)
        elif op == "flip":
            x = _flip(x, generator)
        elif op == "cutout":
            x = _cutout(x, cutout_size, generator)
        else:
            raise ValueError(f"data.augment: unknown '{op}', allowed: {', '.join(AUGMENTATIONS)}")
    return x


def _crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=generator).tolist()
    return torch.stack([padded[i, ..., dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


def _flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


def _cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    centres = torch.stack(
        [
            torch.randint(0, h, (len(x),), generator=generator),
            torch.randint(0, w, (len(x),), generator=generator),
        ],
        1,
    ).tolist()
    x = x.clone()
    for i, (cy, cx) in enumerate(centres):
        y0, y1 = max(cy - size // 2, 0), min(cy + size // 2, h)
        x0, x1 = max(cx - size // 2, 0), min(cx + size // 2, w)
        x[i, ..., y0:y1, x0:x1] = 0
    return x
