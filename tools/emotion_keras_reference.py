"""Reference outputs of the original Keras emotion model, to test the PyTorch port against.

Needs TensorFlow/Keras, which the project does not depend on: run it in a separate
environment (``pip install tensorflow-cpu h5py pillow safetensors``)::

    python tools/emotion_keras_reference.py --shared ../shared

Inputs are the test faces resized whole to 64x64 greyscale (UTKFace crops are tight face
boxes, like FER2013) plus two fixed random images; writes
``tests/data/attributes/emotion_keras_reference.safetensors`` with ``inputs`` (N, 1, 64, 64)
in [-1, 1] and the Keras softmax ``probs`` (N, 7).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

FACES = [
    "tests/data/utkface_mini/32_1_4_20170105165021555.jpg.chip.jpg",
    "tests/data/utkface_mini/40_0_2_20170113190426313.jpg.chip.jpg",
    "tests/data/utkface_mini/75_1_0_20170110182959300.jpg.chip.jpg",
    "tests/data/utkface_mini/28_1_3_20170104231433217.jpg.chip.jpg",
]


def main() -> None:
    import keras

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="tests/data/attributes/emotion_keras_reference.safetensors")
    args = ap.parse_args()
    model = keras.models.load_model(Path(args.shared) / "models" / "fer2013_mini_XCEPTION.102-0.66.hdf5", compile=False)
    grey = [np.asarray(Image.open(f).convert("L").resize((64, 64), Image.Resampling.BILINEAR)) for f in FACES]
    x = (np.stack(grey).astype(np.float32) / 255.0 - 0.5) * 2.0
    x = np.concatenate([x, np.random.default_rng(0).uniform(-1, 1, (2, 64, 64)).astype(np.float32)])
    probs = model.predict(x[..., None], verbose=0).astype(np.float32)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {"inputs": np.ascontiguousarray(x[:, None]), "probs": probs}, args.out, metadata={"keras": keras.__version__}
    )
    print(np.round(probs, 3))


if __name__ == "__main__":
    main()
