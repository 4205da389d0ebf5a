"""Convert the SqueezeNet v1.1 (Keras layout pickle) and LPIPS linear weights to safetensors.

Run once by maintainers: ``python tools/convert_perceptual_weights.py --shared ../shared``.
The pickle is read with an unpickler that only admits numpy arrays, so no code runs.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
           ("numpy._core.multiarray", "_reconstruct")}


class ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="weights/perceptual")
    args = ap.parse_args()
    models = Path(args.shared) / "models"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with open(models / "squeezenet1_1_imagenet_keras_layout.pkl", "rb") as f:
        layers = ArraysOnly(f).load()
    tensors = {}
    for name, (kernel, bias) in layers.items():
        if name == "conv10":  # the ImageNet classifier head is not used for features
            continue
        key = name.replace("/", ".")
        tensors[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()
        tensors[f"{key}.bias"] = torch.from_numpy(np.asarray(bias)).float()
    save_file(tensors, str(out / "squeezenet1_1.safetensors"), metadata={"source": "ndf 0.1.4 (MIT), Caffe SqueezeNet v1.1"})

    lin = torch.load(models / "lpips_v0.1_squeeze_linear.pth", map_location="cpu", weights_only=True)
    lin = {f"lin{i}": lin[f"lin{i}.model.1.weight"].reshape(-1).float().contiguous() for i in range(7)}
    save_file(lin, str(out / "lpips_squeeze_lin.safetensors"), metadata={"source": "lpips v0.1 (BSD-2-Clause)"})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
