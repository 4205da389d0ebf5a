"""Safe loading: no pickle runs, a latent file cannot point at other files, weights load as data only."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pipeline.errors import UserError
from pipeline.latent.files import Latent, load_latent, save_latent
from pipeline.models.checkpoints import load_rosinality
from pipeline.talk.mouth import ShapeModel
from pipeline.training.atnet_train import Trainer

ROOT = Path(__file__).resolve().parents[1]


class Boom:
    """Unpickling this runs code: it must never be unpickled."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/studio-pickle-ran"),))


def sources() -> list[Path]:
    return sorted([*ROOT.joinpath("pipeline").rglob("*.py"), *ROOT.joinpath("app_ui").glob("*.py"), ROOT / "app.py"])


def test_every_torch_load_is_weights_only_and_nothing_unpickles():
    """Read from the code itself: a new loader that forgets weights_only fails here."""
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name == "torch.load":
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("weights_only") == "True", f"{path.name}:{node.lineno} torch.load without weights_only=True"
            assert name not in {"pickle.load", "pickle.loads", "joblib.load"}, f"{path.name}:{node.lineno} {name}"
            if name in {"np.load", "numpy.load"}:
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("allow_pickle", "False") == "False", f"{path.name}:{node.lineno} np.load(allow_pickle)"


def test_a_checkpoint_with_code_in_it_is_refused_without_running_it(tmp_path):
    ckpt = tmp_path / "evil.pt"
    torch.save({"g_ema": {"w": torch.zeros(1)}, "payload": Boom()}, ckpt)
    Path("/tmp/studio-pickle-ran").unlink(missing_ok=True)
    with pytest.raises(UserError):
        load_rosinality(ckpt)
    assert not Path("/tmp/studio-pickle-ran").exists()


def test_a_pickle_named_like_a_latent_is_not_unpickled(tmp_path):
    path = tmp_path / "face.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    Path("/tmp/studio-pickle-ran").unlink(missing_ok=True)
    with pytest.raises(UserError, match="not a latent file"):
        load_latent(path)
    assert not Path("/tmp/studio-pickle-ran").exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/tuned.safetensors", "..", "tuned.pt"])
def test_a_latent_file_cannot_name_a_file_elsewhere(tmp_path, name):
    """The tuned generator a latent names is looked up beside it: only a plain .safetensors file name."""
    path = save_latent(tmp_path / "face.safetensors", Latent(torch.zeros(1, 8), model="m", space="w"))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    save_file({"latent": torch.zeros(1, 8)}, str(path), metadata={**meta, "generator": name})
    with pytest.raises(UserError, match="generator"):
        load_latent(path)


def test_a_latent_file_naming_its_tuned_generator_beside_it_loads(tmp_path):
    latent = Latent(torch.zeros(1, 8), model="m", space="w", generator="face.pti.safetensors")
    assert load_latent(save_latent(tmp_path / "face.safetensors", latent)).generator == "face.pti.safetensors"


def test_lip_sync_training_resumes_from_a_weights_only_state(tmp_path):
    """The trainer's own state file holds tensors only, so it loads with weights_only=True."""
    rng = np.random.default_rng(0)
    net = torch.nn.Linear(3, 2)
    shape = ShapeModel(mean=rng.standard_normal(74), basis=np.linalg.qr(rng.standard_normal((74, 4)))[0].T,
                       std=np.ones(4))  # fmt: skip
    trainer = Trainer.__new__(Trainer)
    trainer.run_dir, trainer.step, trainer.seconds, trainer.budget, trainer.history = tmp_path, 7, 12.5, (0.0, 60.0), []
    trainer.model = SimpleNamespace(net=net, shape=shape)
    trainer.opt = torch.optim.Adam(net.parameters())
    trainer.train_rests = rng.standard_normal((2, 68, 2))
    trainer.batcher = SimpleNamespace(rest_coeffs=None)
    trainer.save()
    resumed = Trainer.__new__(Trainer)
    resumed.run_dir, resumed.train_rests, resumed.batcher = tmp_path, trainer.train_rests, SimpleNamespace(rest_coeffs=None)
    resumed.model = SimpleNamespace(net=torch.nn.Linear(3, 2), shape=ShapeModel(np.zeros(74), np.zeros((4, 74)), np.zeros(4)))
    resumed.opt = torch.optim.Adam(resumed.model.net.parameters())
    assert resumed.load() and resumed.step == 7 and resumed.budget == (0.0, 60.0)
    assert np.allclose(resumed.model.shape.basis, shape.basis) and isinstance(resumed.model.shape.mean, np.ndarray)
    assert torch.equal(resumed.model.net.weight, net.weight)
