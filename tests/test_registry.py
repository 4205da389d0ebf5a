"""Model registry and the Hugging Face Hub path, exercised offline from a local cache."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.errors import UserError
from pipeline.models import registry

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "data" / "golden"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def run_py(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=120)


@pytest.fixture()
def hub_cache(tmp_path):
    """A Hugging Face cache holding a small rosinality checkpoint at a pinned revision."""
    state = load_file(str(GOLDEN / "stylegan2_rosinality_small64_weights.safetensors"))
    blob = tmp_path / "ckpt.pt"
    torch.save({"g_ema": state, "latent_avg": torch.zeros(64)}, blob)
    data = blob.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    repo_dir = tmp_path / "hub" / "models--tester--tiny-stylegan2"
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "blobs" / sha).write_bytes(data)
    snap = repo_dir / "snapshots" / REVISION
    snap.mkdir(parents=True)
    (snap / "tiny.pt").symlink_to(repo_dir / "blobs" / sha)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REVISION)

    def registry_file(sha256: str = sha, repo: str = "tester/tiny-stylegan2") -> Path:
        toml = tmp_path / "extra.toml"
        toml.write_text(
            f'[models.tiny-hub]\nformat = "rosinality"\nresolution = 64\nalignment = "ffhq"\n'
            f'[[models.tiny-hub.hub]]\nrepo = "{repo}"\nrevision = "{REVISION}"\nfilename = "tiny.pt"\n'
            f'size = {len(data)}\nsha256 = "{sha256}"\n'
        )
        return toml

    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "STUDIO_CACHE": str(tmp_path / "cache")}
    return env, registry_file


def test_registry_lists_embedded_default_and_ffhq():
    names = [e.name for e in registry.list_models()]
    assert names[0] == "utkface-128" == registry.default_model().name
    ffhq = registry.get_model("ffhq-1024")
    assert ffhq.format == "rosinality" and ffhq.resolution == 1024 and ffhq.alignment == "ffhq"
    assert ffhq.hub[0].revision == "5fde0cdb3664b04e8126dc6b0cab010e7813c18b"
    assert ffhq.hub[0].sha256.startswith("646c7e7c") and ffhq.hub[1].repo == "akhaliq/OneshotCLIP-stylegan2-ffhq"
    assert ffhq.file("directions") is not None


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UserError, match="unknown model 'nope'"):
        registry.get_model("nope")


def test_hub_model_loads_offline_from_cache_and_matches_golden(hub_cache):
    env, registry_file = hub_cache
    env["STUDIO_MODELS"] = str(registry_file())
    code = (
        "import torch; from safetensors.torch import load_file; from pipeline.models import registry\n"
        "e = registry.get_model('tiny-hub'); assert e.status == 'cached', e.status\n"
        "G = registry.load_generator('tiny-hub')\n"
        "io = load_file('tests/data/golden/stylegan2_rosinality_small64_io.safetensors')\n"
        "img, _ = G([io['w']], input_is_latent=True, randomize_noise=False)\n"
        "print((img - io['img_w']).abs().max().item())\n"
    )
    out = run_py(code, env)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) <= 1e-4
    assert (Path(env["STUDIO_CACHE"]) / "verified.json").exists()  # the hash check is remembered


def test_hub_file_with_wrong_hash_is_refused(hub_cache):
    env, registry_file = hub_cache
    env["STUDIO_MODELS"] = str(registry_file(sha256="0" * 64))
    out = subprocess.run([sys.executable, "-m", "pipeline", "sample", "--model", "tiny-hub", "--out", "/dev/null"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert "sha256" in out.stderr and "Traceback" not in out.stderr


def test_hub_model_not_cached_offline_fails_clearly(hub_cache):
    env, registry_file = hub_cache
    env["STUDIO_MODELS"] = str(registry_file(repo="tester/absent"))
    out = subprocess.run([sys.executable, "-m", "pipeline", "sample", "--model", "tiny-hub", "--out", "/dev/null"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "offline" in out.stderr and "--checkpoint" in out.stderr


def test_cli_sample_from_checkpoint_and_default(tmp_path):
    state = load_file(str(GOLDEN / "stylegan2_rosinality_small64_weights.safetensors"))
    ckpt = tmp_path / "golden.pt"
    torch.save({"g_ema": state}, ckpt)
    out = tmp_path / "grid.png"
    res = subprocess.run([sys.executable, "-m", "pipeline", "sample", "--checkpoint", str(ckpt), "--n", "4", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)  # 2x2 grid with 2 px padding
    res = subprocess.run([sys.executable, "-m", "pipeline", "models", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0 and '"utkface-64"' in res.stdout


def test_cli_help_lists_steps():
    res = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    for step in ("align", "invert", "sample", "models", "train", "bench"):
        assert step in res.stdout
