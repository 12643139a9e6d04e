"""Candidate models for `lilm bases`: naming them, loading them, their size, and a baseline.

A candidate is a local MLX model directory, optionally with a LoRA adapter written as
`DIR@ADAPTER_DIR` (the adapter directory holds adapter_config.json + adapters.safetensors).

    >>> spec = CandidateSpec.parse("models/qwen@adapters/run1")
    >>> spec.model_path, spec.adapter_path, spec.label
    ('models/qwen', 'adapters/run1', 'qwen+run1')
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

# Files a random-initialised copy takes from its model (everything but the weights).
WEIGHT_SUFFIXES = (".safetensors", ".npz", ".bin", ".gguf")


@dataclass(frozen=True)
class CandidateSpec:
    """One model to compare: a directory, an optional adapter, and the name shown in tables."""

    model_path: str
    adapter_path: str | None = None
    label: str = ""

    @classmethod
    def parse(cls, text: str) -> CandidateSpec:
        """`DIR` or `DIR@ADAPTER` (split at the last "@" unless the whole text is an existing
        path); the label is the directory name (+ adapter name).

        >>> CandidateSpec.parse("model/lilm-tiny/").label
        'lilm-tiny'
        """
        model_path, _, adapter = text.rpartition("@") if "@" in text and not Path(text).exists() else (text, "", "")
        label = Path(model_path).name or model_path
        if adapter:
            label += "+" + (Path(adapter).name or adapter)
        return cls(model_path=model_path, adapter_path=adapter or None, label=label)


@dataclass(frozen=True)
class ModelFacts:
    """What a candidate costs: disk, parameters, context, load time."""

    disk_bytes: int
    parameters: int
    context_limit: int | None
    load_seconds: float
    quantization: str  # e.g. "4-bit" or "none"
    has_chat_template: bool


@dataclass
class LoadedCandidate:
    """A loaded model and tokenizer with its facts (drop it to free the memory)."""

    spec: CandidateSpec
    model: object
    tokenizer: object
    facts: ModelFacts


def disk_bytes(*paths: str | None) -> int:
    """Total size of the files under the given directories (None entries skipped)."""
    total = 0
    for path in paths:
        if path:
            total += sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    return total


def parameter_count(model) -> int:
    """Parameters as the unquantized model would have them (mlx-lm counts packed weights back)."""
    from mlx_lm.utils import get_total_parameters

    return int(get_total_parameters(model))


def _quantization(config: dict) -> str:
    quant = config.get("quantization") or config.get("quantization_config")
    if isinstance(quant, dict) and quant.get("bits"):
        return f"{quant['bits']}-bit"
    return "none"


def load_candidate(spec: CandidateSpec) -> LoadedCandidate:
    """Load as the bots do (local directories only: nothing is downloaded). Raises ModelError."""
    from core.backends.mlx_backend import load_model
    from pipeline.perplexity import context_limit

    path = Path(spec.model_path).expanduser()
    began = time.perf_counter()
    model, tokenizer = load_model(str(path), spec.adapter_path, local_only=True)
    load_seconds = time.perf_counter() - began
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    facts = ModelFacts(
        disk_bytes=disk_bytes(str(path), spec.adapter_path),
        parameters=parameter_count(model),
        context_limit=context_limit(model),
        load_seconds=load_seconds,
        quantization=_quantization(config),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
    )
    return LoadedCandidate(spec=spec, model=model, tokenizer=tokenizer, facts=facts)


def random_init_like(model_dir: str | Path, out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a random-initialised model with `model_dir`'s config and tokenizer to `out_dir`.

    The baseline a trained model must beat: same shape, same tokenizer, no learning.
    Quantized models are not supported (the copy would need re-quantizing).
    """
    import mlx.core as mx

    # _get_classes: how mlx_lm.load itself picks the model class (mlx-lm is pinned at 0.32.2).
    from mlx_lm.utils import _get_classes, load_config, save_model

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config = load_config(model_dir)
    if config.get("quantization"):
        raise ValueError(f"{model_dir} is quantized: a random-initialised copy needs a float model")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and item.name != "model.safetensors.index.json":
            shutil.copy2(item, out_dir / item.name)
    model_class, args_class = _get_classes(config=config)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(config))
    mx.eval(model.parameters())
    save_model(out_dir, model)
    return out_dir


__all__ = [
    "CandidateSpec",
    "LoadedCandidate",
    "ModelFacts",
    "disk_bytes",
    "load_candidate",
    "parameter_count",
    "random_init_like",
]
