"""Reading and writing generator weights; the only module that knows file formats.

* ``rosinality``: the ``.pt`` files of rosinality's ``stylegan2-pytorch`` (the public
  FFHQ checkpoints on the Hugging Face Hub): a dict with ``g_ema`` (and maybe ``g``,
  ``d``, ...) or a bare state dict. Read with ``torch.load(weights_only=True)``, so no
  code inside the file ever runs.
* ``native``: our own models, a safetensors file plus a JSON config.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import UserError
from .generator import Generator, GeneratorConfig


def config_from_state_dict(state: dict[str, torch.Tensor]) -> GeneratorConfig:
    """Infer the architecture of a rosinality-format ``g_ema`` state dict."""
    try:
        style_dim = state["style.1.weight"].shape[1]
        n_mlp = max(int(m.group(1)) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
        n_rgbs = 1 + max((int(m.group(1)) + 1 for k in state if (m := re.fullmatch(r"to_rgbs\.(\d+)\.bias", k))), default=0)
        channels = {4: state["conv1.conv.weight"].shape[1]}
        for i in range(n_rgbs - 1):
            channels[2 ** (i + 3)] = state[f"convs.{2 * i}.conv.weight"].shape[1]
        kernel = state.get("convs.0.conv.blur.kernel")
    except (KeyError, ValueError) as exc:
        raise UserError(f"not a StyleGAN2 generator state dict (missing {exc})") from None
    blur = [1, 3, 3, 1]
    if kernel is not None and kernel.shape[0] != 4:
        # Recover a separable 1-D kernel from the stored 2-D one (up to scale).
        row = kernel[kernel.shape[0] // 2]
        blur = [round(float(v / row.min())) for v in row]
    lr_mlp = 0.01
    return GeneratorConfig(
        resolution=2 ** (n_rgbs + 1), style_dim=style_dim, n_mlp=n_mlp, channels=channels, blur_kernel=blur, lr_mlp=lr_mlp
    )


def load_rosinality(path: str | Path, config: GeneratorConfig | None = None, key: str = "g_ema") -> Generator:
    """Load a rosinality ``.pt`` checkpoint strictly (every key, every shape)."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal is a bad file for the user
        raise UserError(f"cannot read checkpoint {Path(path).name}: {type(exc).__name__}: {str(exc)[:200]}") from None
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{Path(path).name} holds no generator state dict")
    return generator_from_state_dict(state, config)


def generator_from_state_dict(state: dict[str, torch.Tensor], config: GeneratorConfig | None = None) -> Generator:
    config = config or config_from_state_dict(state)
    gen = Generator(config)
    try:
        gen.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise UserError(f"checkpoint does not match the generator config: {str(exc).splitlines()[0]}") from None
    return gen.eval()


def save_native(gen: Generator, directory: str | Path, name: str = "generator", half: bool = True) -> Path:
    """Write ``name.safetensors`` (+ ``name.json`` config) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in gen.state_dict().items()}
    save_file(tensors, str(directory / f"{name}.safetensors"), metadata={"format": "stylegan2-rosinality-keys"})
    (directory / f"{name}.json").write_text(json.dumps(gen.config.to_dict(), indent=2))
    return directory / f"{name}.safetensors"


def load_native(weights: str | Path, config_path: str | Path | None = None) -> Generator:
    weights = Path(weights)
    config_path = Path(config_path) if config_path else weights.with_suffix(".json")
    if not weights.exists():
        raise UserError(f"weights not found: {weights}")
    state = load_file(str(weights))
    config = GeneratorConfig.from_dict(json.loads(config_path.read_text())) if config_path.exists() else None
    return generator_from_state_dict(state, config)


def random_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the given shapes (to test loaders without the real file)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=gen) / math.sqrt(max(1, s[-1])) for k, s in shapes.items()}
