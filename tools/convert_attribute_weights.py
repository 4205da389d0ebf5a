"""Write ``weights/attributes``: the emotion net as safetensors, and the age and gender ONNX files.

Run once by maintainers: ``python tools/convert_attribute_weights.py --shared ../shared``.
The Keras HDF5 file is read with h5py only (no TensorFlow): its ``model_config`` is checked
against :class:`pipeline.models.mini_xception.MiniXception` layer by layer and the kernels are
transposed from Keras' HWIO layout to PyTorch's OIHW.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.models.mini_xception import KERAS_BN_EPS, MiniXception  # noqa: E402

EMOTION_HDF5 = "fer2013_mini_XCEPTION.102-0.66.hdf5"
COPIED = ["age-v1.onnx", "gender-v1.onnx", "NOTICE-age-gender-models-CC0.md"]
# Batch norms are named after the conv they follow.
BN_OF = {"conv1": "bn1", "conv2": "bn2", "sep1": "bn1", "sep2": "bn2", "shortcut": "shortcut_bn"}


def keras_layers(f: h5py.File) -> list[dict]:
    config = json.loads(f.attrs["model_config"])
    return config["config"]["layers"]


def layer_weights(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    group = f["model_weights"][name]
    out = {}
    for wname in group.attrs["weight_names"]:
        wname = wname.decode() if isinstance(wname, bytes) else wname
        out[wname.split("/")[-1].split(":")[0]] = np.asarray(group[wname])
    return out


def map_layers(layers: list[dict]) -> dict[str, str]:
    """Keras layer name -> PyTorch module path, from the layer order and the graph edges."""
    convs = [lay["name"] for lay in layers if lay["class_name"] == "Conv2D"]
    seps = [lay["name"] for lay in layers if lay["class_name"] == "SeparableConv2D"]
    if len(convs) != 7 or len(seps) != 8:
        raise SystemExit(f"unexpected architecture: {len(convs)} convs, {len(seps)} separable convs")
    target = {convs[0]: "conv1", convs[1]: "conv2", convs[-1]: "head"}
    for i, name in enumerate(convs[2:-1]):
        target[name] = f"blocks.{i}.shortcut"
    for i, name in enumerate(seps):
        target[name] = f"blocks.{i // 2}.sep{i % 2 + 1}"
    for lay in layers:
        if lay["class_name"] == "BatchNormalization":
            if lay["config"]["epsilon"] != KERAS_BN_EPS:
                raise SystemExit(f"{lay['name']}: epsilon {lay['config']['epsilon']} != {KERAS_BN_EPS}")
            source = target[lay["inbound_nodes"][0][0][0]]
            prefix, _, leaf = source.rpartition(".")
            target[lay["name"]] = (prefix + "." if prefix else "") + BN_OF[leaf]
    return target


def convert_emotion(path: Path) -> dict[str, torch.Tensor]:
    net = MiniXception().eval()
    state = net.state_dict()
    loaded = set()
    with h5py.File(path, "r") as f:
        layers = keras_layers(f)
        pools = [lay["config"] for lay in layers if lay["class_name"] == "MaxPooling2D"]
        if any((c["padding"], c["pool_size"], c["strides"]) != ("same", [3, 3], [2, 2]) for c in pools):
            raise SystemExit(f"unexpected pooling (the module hard-codes 3x3, stride 2, 'same'): {pools}")
        for keras_name, module in map_layers(layers).items():
            w = layer_weights(f, keras_name)
            if "depthwise_kernel" in w:  # (3, 3, C, 1) -> (C, 1, 3, 3)
                pairs = {
                    f"{module}.depthwise.weight": w["depthwise_kernel"].transpose(2, 3, 0, 1),
                    f"{module}.pointwise.weight": w["pointwise_kernel"].transpose(3, 2, 0, 1),
                }
            elif "kernel" in w:  # HWIO -> OIHW
                pairs = {f"{module}.weight": w["kernel"].transpose(3, 2, 0, 1)}
                if "bias" in w:
                    pairs[f"{module}.bias"] = w["bias"]
            else:
                pairs = {
                    f"{module}.weight": w["gamma"],
                    f"{module}.bias": w["beta"],
                    f"{module}.running_mean": w["moving_mean"],
                    f"{module}.running_var": w["moving_variance"],
                }
            for key, value in pairs.items():
                if tuple(state[key].shape) != value.shape:
                    raise SystemExit(f"{keras_name} -> {key}: shape {value.shape} != {tuple(state[key].shape)}")
                state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
                loaded.add(key)
    missing = {k for k in state if not k.endswith("num_batches_tracked")} - loaded
    if missing:
        raise SystemExit(f"weights not found in the HDF5 file: {sorted(missing)}")
    net.load_state_dict(state)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="weights/attributes")
    args = ap.parse_args()
    models = Path(args.shared) / "models"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = convert_emotion(models / EMOTION_HDF5)
    save_file(tensors, str(out / "emotion_mini_xception.safetensors"),
              metadata={"source": f"oarriaga/face_classification {EMOTION_HDF5} (MIT)", "classes": "angry,disgust,fear,happy,sad,surprise,neutral"})  # fmt: skip
    for name in COPIED:
        shutil.copyfile(models / name, out / name)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
