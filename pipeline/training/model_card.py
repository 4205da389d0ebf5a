"""The embedded model's card: data, licence, recipe, compute and measured quality."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_model_card(model_dir: Path, bench: dict, comparison: dict | None = None) -> Path:
    info = json.loads((model_dir / "training.json").read_text())
    config = json.loads((model_dir / "generator.json").read_text())
    train, recipe = info["train"], info["recipe"]
    heldout = [line for line in (model_dir / "heldout.txt").read_text().splitlines() if line and not line.startswith("#")]
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in bench.items() if not isinstance(v, dict))
    recon = bench.get("reconstruction", {})
    recon_rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in recon.items())
    lines = [
        f"# {model_dir.name}: embedded StyleGAN2 face generator",
        "",
        "An embedded model of the studio: a small StyleGAN2 trained on a CPU, with the encoder",
        "trained jointly with it (first guess for inversions).",
        "",
        "## Data and licence",
        "- UTKFace, \"Aligned & Cropped\" faces (200x200), resized whole to "
        f"{config['resolution']} px. **UTKFace is for non-commercial research only; so is this model.**",
        f"- {info['train_files']} training faces; {len(heldout)} faces held out from all training "
        "(generator, encoder, classifiers), listed in `heldout.txt` (a fixed hash-based split).",
        "",
        "## Architecture",
        f"- StyleGAN2 generator (rosinality-compatible keys), {config['resolution']} px, style dim {config['style_dim']}, "
        f"channels {config['channels']} (`generator.json`).",
        "- Mapping: PixelNorm + one linear layer holding the Gaussian fitted to the encoded latents "
        "(`mapping(z) = mean + L z`), so sampling and truncation work as with any StyleGAN2.",
        "- Encoder: residual CNN to W plus per-layer offsets (W+), `encoder.safetensors`.",
        "",
        "## Recipe",
        f"- `{recipe['name']}`: L1 x{recipe['pixel']} + perceptual (SqueezeNet LPIPS-style) x{recipe['perceptual']}"
        + (
            critic_line(recipe) if recipe["adversarial"] or recipe["prior_adversarial"] else ""
        )
        + (
            f"; {recipe['offset_dropout']:.0%} of each batch decoded from W alone (offsets dropped), the way samples are made"
            if recipe.get("offset_dropout")
            else ""
        ),
        f"- batch {recipe['batch']}, Adam lr {recipe['lr']}, latent noise {recipe['latent_noise']} std, "
        f"EMA half-life {recipe.get('ema_half_life', 10_000) // 1000}k images.",
        f"- Images seen: {train['images_seen']:,}; CPU time {train['cpu_seconds'] / 3600:.2f} h "
        f"(wall {train['wall_seconds'] / 3600:.2f} h) on {platform.machine()} CPU, PyTorch {torch.__version__}"
        + (f"; {train['bf16_images']:,} of the images with bfloat16 autocast." if train.get("bf16_images") else "."),
        "- Resume: `nice -n 19 .venv/bin/python -m pipeline train generator --data ../shared/data/utkface "
        f"--recipe {recipe['name']} --compact-state weights/{model_dir.name}/train_state.safetensors` (continues from "
        "that compact state; `--export DIR` writes a model folder, whose encoder `train encoder` then fine-tunes).",
        "",
        "## Quality (`python -m pipeline bench generator`)",
        "| measure | value |",
        "|---|---|",
        rows,
    ]
    if recon_rows:
        by = "the encoder and its refiner" if (model_dir / "refiner.safetensors").exists() else "the encoder alone"
        lines += ["", f"Reconstruction of held-out faces by {by}:", "", "| measure | value |", "|---|---|", recon_rows]
    attributes = bench.get("attributes")
    if attributes:
        keys = ["age_mean", "age_std", "female_share", "identity_pairwise_distance"]
        lines += ["", "Age, gender (classifiers of `weights/attributes`) and diversity (mean pairwise dlib identity",
                  "distance) of samples at truncation 1.0, against held-out real faces and their labels:", "",
                  "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]  # fmt: skip
        for kind, values in attributes.items():
            lines.append(f"| {kind} | " + " | ".join(_fmt(values[k]) if k in values else "-" for k in keys) + " |")
    extras = [(name, text) for name, text in (
        ("DIRECTIONS.md", "edit directions, how they were found and what each edit measurably does"),
        ("refiner.safetensors", "the encoder's refiner: corrections of its guess, each from the photo and the photo minus "
                                "what the guess draws (`python -m pipeline train encoder --refine-steps 3 --calibrated`); "
                                "its training and held-out numbers before and after are in `encoder_training.json`"),
        ("talk_map.safetensors", "the talking-head map (landmarks to latent offsets, `python -m pipeline train talkmap`)"),
        ("prior.safetensors", "the random-face prior: a Gaussian mixture fitted to the encoded W+ of training faces "
                              "(`python -m pipeline train prior`); samples, and truncation towards each one's own mode, use it"),
    ) if (model_dir / name).exists()]  # fmt: skip
    if extras:
        lines += ["", "## Also in this folder", ""] + [f"- `{name}`: {text}." for name, text in extras]
    if comparison:
        lines += ["", "## Compared with", "", "The numbers of the other recipe or release named below, from the same benchmark:",
                  "", "```json", json.dumps(comparison, indent=2), "```"]  # fmt: skip
    lines += [
        "",
        "## Limitations",
        f"- {config['resolution']} px output"
        + ("; faces are soft and lack fine detail" if config["resolution"] < 128 else "; GAN artefacts (mottled skin) on some faces")
        + ". Use the hub FFHQ model for high resolution.",
        "- UTKFace's age, gender and ethnicity balance is inherited; attribute edits reflect it.",
    ]
    if attributes and "samples" in attributes and "real" in attributes:
        ours, real = attributes["samples"], attributes["real"]
        narrow = ours["identity_pairwise_distance"] < 0.9 * real["identity_pairwise_distance"] or ours["age_std"] < 0.7 * real["age_std"]
        if narrow:
            far = "far " if ours["identity_pairwise_distance"] < 0.6 * real["identity_pairwise_distance"] else ""
            lines.append(
                f"- Samples are {far}less varied than real faces (mean pairwise identity distance "
                f"{ours['identity_pairwise_distance']:.2f} vs {real['identity_pairwise_distance']:.2f}; age "
                f"{ours['age_mean']:.0f} ± {ours['age_std']:.0f} vs {real['age_mean']:.0f} ± {real['age_std']:.0f} years): "
                "random faces look alike and young. Inverted photos are the better starting point for edits."
            )
    lines.append("")
    path = model_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def critic_line(recipe: dict) -> str:
    """The adversarial part of a recipe, as the card states it."""
    if recipe.get("critic") == "patch":
        augment = "colour, translation" + (f", cutout {recipe['cutout']}" if recipe.get("cutout") else "")
        return (
            f" + hinge PatchGAN on pixels x{recipe['adversarial']} (weighted adaptively at the last layer), also on"
            f" {recipe.get('manifold_codes', 0)} decodes a step of prior samples, mixes and edits; DiffAugment ({augment});"
            f" R1 gamma {recipe['r1_gamma']}; after {recipe['adversarial_after']} images"
        )
    return (
        f" + non-saturating GAN loss x{recipe['adversarial']} on reconstructions and x{recipe['prior_adversarial']} on prior samples,"
        f" critic on frozen SqueezeNet features (R1 gamma {recipe['r1_gamma']}), after {recipe['adversarial_after']} images"
    )
