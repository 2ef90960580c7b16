"""The image mask of a Partial LoRA forward, shared by every PLoRA layer of one model.

Hugging Face models call their linear layers as `layer(x)`, so the mask cannot travel as an
argument: all wrapped layers of one model share one `PLoRAMask` holder, set before the
model's forward (models/plora.py `image_mask`). Setting a mask splits the flat positions
(batch * seq + position) into text rows and image rows once (one host read of the image
count, the only device-to-host sync of the whole forward, and one stable argsort on the
mask's device), so no layer looks at the mask's values and no layer syncs.

The holder is per model, not per thread: run one masked forward per model at a time.
"""

from __future__ import annotations

import torch


class PLoRAMask:
    """The image mask of the current forward, shared by every PLoRALinear of one model.

    `shape` is the mask's [batch, seq] (None: no mask, every layer is its base layer);
    `rows` holds the flat indices (batch * seq + position) of the image positions and
    `text_rows` those of the text positions (both ascending), `order` the text rows then
    the image rows and `inverse` its inverse permutation (the merged path gathers with
    `order` and puts the rows back with `inverse`), all found once per `set` so that the
    layers never read the mask's values.
    """

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None
        self.rows: torch.Tensor | None = None
        self.text_rows: torch.Tensor | None = None
        # order: the text rows then the image rows; inverse: where each row went in order.
        self.order: torch.Tensor | None = None
        self.inverse: torch.Tensor | None = None
        # grouped: the layer inputs' rows are already grouped, text rows [0, grouped_text)
        # then image rows (models/plora_grouped.py); None: rows in their own order.
        self.grouped_text: int | None = None
        self._rows_by_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def set(self, mask: torch.Tensor | None) -> None:
        """Use `mask` (bool [batch, seq]) for the following forwards; None clears it.

        Splits the positions here, once, on the mask's device: the image count is read to
        the host (a mask on the CPU costs no accelerator sync at all, one on a GPU a single
        sync) and a stable argsort puts the text rows first, the image rows after, each in
        ascending order.
        """
        if mask is None:
            self.clear()
            return
        check_mask(mask)
        flat = mask.reshape(-1)
        count = int(flat.sum().item())
        total = flat.numel()
        if count == 0:
            self.order = self.inverse = self.text_rows = torch.arange(total, device=flat.device)
        else:
            self.order = torch.argsort(flat.to(torch.uint8), stable=True)
            self.inverse = torch.empty_like(self.order).scatter_(
                0, self.order, torch.arange(total, device=flat.device))
        self.text_rows, self.rows = self.order[:total - count], self.order[total - count:]
        self._rows_by_device = {self.rows.device: (self.rows, self.text_rows, self.order,
                                                   self.inverse)}
        self.shape = (mask.shape[0], mask.shape[1])
        self.grouped_text = None

    def set_grouped(self, length: int, text: int) -> None:
        """The next forwards get one sequence of `length` rows already grouped: its `text`
        text rows first, its image rows after (models/plora_grouped.py moves the rows once
        for the whole model). The layers then multiply two contiguous slices and move no
        rows at all."""
        if not 0 <= text <= length:
            raise ValueError(f"text rows {text} must be between 0 and the length {length}")
        self.clear()
        self.shape = (1, length)
        self.rows = torch.arange(text, length)  # only its count is read in grouped mode
        self.grouped_text = text

    def clear(self) -> None:
        """Forget the mask: every layer computes its base layer only."""
        self.shape = None
        self.rows = None
        self.text_rows = None
        self.order = None
        self.inverse = None
        self.grouped_text = None
        self._rows_by_device = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(rows, text_rows, order, inverse) on `device`."""
        rows = self._rows_by_device.get(device)
        if rows is None:
            order = self.order.to(device, non_blocking=True)
            text = order.shape[0] - self.rows.shape[0]
            rows = self._rows_by_device[device] = (
                order[text:], order[:text], order, self.inverse.to(device, non_blocking=True))
        return rows

    def rows_on(self, device: torch.device) -> torch.Tensor:
        """The image rows on `device`, copied there once per mask (a model split across
        devices gets one copy per device; a copy to a GPU does not sync)."""
        return self._on(device)[0]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when the layer input's [batch, seq] differs from the mask's."""
        if self.shape is None or tuple(x.shape[:-1]) == self.shape:
            return
        if x.dim() != 3:
            raise ValueError(f"a PLoRA layer got an input of shape {tuple(x.shape)}; with an "
                             "image mask set it must be [batch, seq, features]")
        batch, seq = self.shape
        if x.shape[1] != seq:
            raise ValueError(
                f"the image mask covers {seq} positions but the layer input has {x.shape[1]} "
                "query positions: the mask must match the current query positions (with a "
                "KV cache, decode steps need a [batch, 1] all-false mask, or clear the mask)")
        raise ValueError(
            f"the image mask has batch {batch} but the layer input has batch {x.shape[0]}: "
            "expand the mask the same way as the inputs (beam search: "
            "mask.repeat_interleave(num_beams, dim=0))")


def check_mask(mask: object) -> None:
    """Raise TypeError / ValueError unless `mask` is a bool tensor of shape [batch, seq]."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"the image mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"the image mask has dtype {mask.dtype}; it must be torch.bool: "
                         "pass mask.bool() (true at image positions)")
    if mask.dim() != 2:
        raise ValueError(f"the image mask has shape {tuple(mask.shape)}; it must be "
                         "[batch, seq], aligned with the input ids / embeddings")
