"""The image encoder's trainable parts on disk: projector, skip and newline embeddings.

`EncoderAdapterFiles` gives models/vision.py's ImageEncoder `save_adapter` / `load_adapter`:
one safetensors file whose metadata records what the tensors depend on (tower, vision_dim,
d_model, image size, feature layer, newline), checked before a file is loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

ADAPTER_FORMAT = "image-adapter/1"


class EncoderAdapterFiles:
    """Adapter I/O of an ImageEncoder (it needs `projector`, `skip_embedding`,
    `newline_embedding`, `use_newline`, `tower`, `d_model` and `tile`)."""

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors by name: "projector.<key>", "skip_embedding",
        "newline_embedding" (when used)."""
        state = {f"projector.{key}": value for key, value in self.projector.state_dict().items()}
        state["skip_embedding"] = self.skip_embedding.detach()
        if self.newline_embedding is not None:
            state["newline_embedding"] = self.newline_embedding.detach()
        return state

    def adapter_metadata(self) -> dict[str, str]:
        """What the saved tensors depend on, stored in the file and checked on load."""
        return {"format": ADAPTER_FORMAT, "tower": self.tower.name,
                "vision_dim": str(self.tower.hidden_size), "d_model": str(self.d_model),
                "image_size": str(self.tile), "feature_layer": str(self.tower.feature_layer),
                "newline": str(self.use_newline).lower()}

    def save_adapter(self, path: str | Path) -> Path:
        """Write projector + skip (+ newline) embeddings to a safetensors file, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.detach().to("cpu").contiguous()
                   for key, value in self.adapter_state_dict().items()}
        partial = path.with_name(path.name + ".partial")
        save_file(tensors, str(partial), metadata=self.adapter_metadata())
        partial.replace(path)
        return path

    def load_adapter(self, path: str | Path) -> None:
        """Load a file written by save_adapter into this encoder (cast to its dtype/device).

        Refuses a file made for another tower size, feature layer, vision_dim or d_model, or
        with/without the newline embedding, since its tensors would not fit or mean the same.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"adapter file {str(path)!r} does not exist: check the path "
                                    "or train one first")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        self._check_adapter(path, metadata, tensors)
        with torch.no_grad():
            for key, target in self.adapter_state_dict().items():
                target.copy_(tensors[key].to(target.device, dtype=target.dtype))

    def _check_adapter(self, path: Path, metadata: dict[str, str],
                       tensors: dict[str, torch.Tensor]) -> None:
        """Raise ValueError naming the first way the file does not fit this encoder."""
        if metadata.get("format") != ADAPTER_FORMAT:
            raise ValueError(f"{str(path)!r} is not an image adapter file (format "
                             f"{metadata.get('format')!r}, expected {ADAPTER_FORMAT!r})")
        expected = self.adapter_metadata()
        for key in ("vision_dim", "d_model", "image_size", "feature_layer", "newline"):
            if metadata.get(key) != expected[key]:
                raise ValueError(f"{str(path)!r} was saved with {key}={metadata.get(key)}, this "
                                 f"encoder has {key}={expected[key]}: build the encoder with "
                                 "the same settings (tower, d_model, image_size, "
                                 "feature_layer, newline) or train a new adapter")
        for key, target in self.adapter_state_dict().items():
            if key not in tensors or tuple(tensors[key].shape) != tuple(target.shape):
                found = tuple(tensors[key].shape) if key in tensors else "missing"
                raise ValueError(f"{str(path)!r}: tensor {key!r} is {found}, expected "
                                 f"{tuple(target.shape)}")
