"""`lilm fuse`: merge trained adapters into their base model, as a standalone model directory.

The output (`model/<name>` by default) loads with `mlx_lm.load` and core's MLX backend
(`LILM_MODEL=model/<name>`): weights, `config.json`, the base's own tokenizer files, and
`lilm_build.json` saying what was fused from what.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.train_config import TrainError

BUILD_INFO_FILE = "lilm_build.json"
# Copied byte for byte from the base: transformers may rewrite a tokenizer it saves itself.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "generation_config.json")


@dataclass(frozen=True)
class FuseResult:
    """What `fuse_adapters` wrote."""

    out_dir: Path
    base_model: str
    adapter_path: Path
    fine_tune_type: str
    fused_layers: int
    seconds: float


def fuse_adapters(*, adapter_path: str | Path, out_dir: str | Path, base_model: str | None = None) -> FuseResult:
    """Fuse `adapter_path` (a `lilm train` run directory) into its base model and save to `out_dir`.

    `base_model` defaults to the `model` recorded in the run's adapter_config.json.
    """
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import load, save

    from core.backends.mlx_backend import check_model_paths

    began = time.perf_counter()
    adapter_path = Path(adapter_path)
    adapter_config = read_adapter_config(adapter_path)
    base = str(base_model or adapter_config.get("model") or "")
    if not base:
        raise TrainError(f"{adapter_path}/adapter_config.json names no base model: pass --model")
    out_dir = Path(out_dir)
    if out_dir.resolve() in (Path(base).resolve(), adapter_path.resolve()):
        raise TrainError(f"refusing to write the fused model over its own input {out_dir}")
    model, tokenizer, config = load(check_model_paths(base), adapter_path=str(adapter_path), return_config=True)
    fused = [(name, module.fuse()) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    save(out_dir, base, model, tokenizer, config, donate_model=False)
    copy_tokenizer_files(base, out_dir)
    result = FuseResult(
        out_dir=out_dir, base_model=base, adapter_path=adapter_path,
        fine_tune_type=str(adapter_config.get("fine_tune_type", "lora")), fused_layers=len(fused),
        seconds=time.perf_counter() - began,
    )
    info = {"step": "fuse", **{key: str(value) if isinstance(value, Path) else value for key, value in asdict(result).items()},
            "adapter_config": adapter_config}
    (out_dir / BUILD_INFO_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def read_adapter_config(adapter_path: Path) -> dict:
    """The run's adapter_config.json, with a clear error when the directory is not a run."""
    path = Path(adapter_path) / "adapter_config.json"
    if not path.is_file() or not (Path(adapter_path) / "adapters.safetensors").is_file():
        raise TrainError(f"{adapter_path} is not a trained adapter directory (needs adapter_config.json and adapters.safetensors)")
    return json.loads(path.read_text(encoding="utf-8"))


def copy_tokenizer_files(source: str | Path, out_dir: str | Path) -> list[str]:
    """Copy the tokenizer files a local `source` model has into `out_dir`; returns their names."""
    source = Path(source)
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, Path(out_dir) / name)
            copied.append(name)
    return copied
