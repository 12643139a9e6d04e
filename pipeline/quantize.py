"""`lilm quantize`: a 4- or 8-bit (affine, grouped) copy of a model directory, with mlx-lm.

mlx-lm quietly leaves a layer unquantized when its input width is not a multiple of the group
size; tiny models (hidden size 64 with group 128, say) would come out barely quantized. We
refuse instead, naming the layers and the group sizes that would work.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.fuse import BUILD_INFO_FILE, copy_tokenizer_files
from pipeline.train_config import TrainError

GROUP_SIZES = (32, 64, 128)


class QuantizeError(TrainError):
    """The model cannot be quantized as asked."""

    user_message = "呢個模型唔可以咁樣量化，睇下 bits 同 group size。"


@dataclass(frozen=True)
class QuantizeResult:
    """What `quantize_model_dir` wrote."""

    source: Path
    out_dir: Path
    bits: int
    group_size: int
    bits_per_weight: float
    disk_bytes: int
    source_disk_bytes: int
    seconds: float


def quantize_model_dir(model_dir: str | Path, *, out_dir: str | Path, bits: int = 4, group_size: int = 64) -> QuantizeResult:
    """Quantize the mlx model in `model_dir` into `out_dir` (weights, config, tokenizer, lilm_build.json)."""
    from mlx_lm.utils import compute_bits_per_weight, load, quantize_model, save

    began = time.perf_counter()
    source, out_dir = Path(model_dir), Path(out_dir)
    if not (source / "config.json").is_file():
        raise QuantizeError(f"{source} is not a model directory (no config.json)")
    if out_dir.resolve() == source.resolve():
        raise QuantizeError(f"refusing to overwrite the source model {source}")
    model, tokenizer, config = load(str(source), return_config=True)
    if "quantization" in config:
        raise QuantizeError(f"{source} is already quantized ({config['quantization']})")
    check_group_size(model, group_size)
    model, quantized_config = quantize_model(model, config, group_size, bits)
    save(out_dir, str(source), model, tokenizer, quantized_config, donate_model=False)
    copy_tokenizer_files(source, out_dir)
    result = QuantizeResult(
        source=source, out_dir=out_dir, bits=bits, group_size=group_size,
        bits_per_weight=float(compute_bits_per_weight(model)), disk_bytes=_weights_bytes(out_dir),
        source_disk_bytes=_weights_bytes(source), seconds=time.perf_counter() - began,
    )
    info = {"step": "quantize", "source": str(source), "bits": bits, "group_size": group_size,
            "bits_per_weight": result.bits_per_weight, "disk_bytes": result.disk_bytes}
    (out_dir / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return result


def check_group_size(model, group_size: int) -> None:
    """Raise QuantizeError unless every quantizable layer's input width divides by `group_size`."""
    widths: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        if hasattr(module, "to_quantized") and hasattr(module, "weight"):
            widths.setdefault(int(module.weight.shape[-1]), []).append(name)
    bad = {width: names for width, names in widths.items() if width % group_size}
    if bad:
        working = [size for size in GROUP_SIZES if all(width % size == 0 for width in widths)]
        detail = "; ".join(f"width {width}: {len(names)} layers, e.g. {names[0]}" for width, names in sorted(bad.items()))
        raise QuantizeError(
            f"group size {group_size} does not divide the input width of every layer ({detail}); "
            f"group sizes that fit this model: {working or 'none'}"
        )


def _weights_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*.safetensors"))
