"""The embedded model's training loop: learns, checkpoints, resumes, exports."""

from pathlib import Path

import pytest
import torch

from pipeline.latent.prior import load_prior
from pipeline.models.checkpoints import load_native
from pipeline.models.encoder import load_encoder
from pipeline.models.generator import GeneratorConfig
from pipeline.training.data import heldout_split, list_images
from pipeline.training.generator_train import RECIPES, Trainer, export, grown_config, recipe_with, train

DATA = Path(__file__).parent / "data" / "utkface_mini"
TINY = GeneratorConfig(resolution=32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16})


def test_heldout_split_is_fixed_and_disjoint():
    files = list_images(DATA)
    train_a, held_a = heldout_split(files, 5)
    train_b, held_b = heldout_split(list(reversed(files)), 5)
    assert held_a == held_b and len(held_a) == 5
    assert not set(train_a) & set(held_a) and len(train_a) + len(held_a) == len(files)


def test_training_reduces_reconstruction_error(tmp_path):
    recipe = recipe_with("ae-pgan", batch=8, adversarial_after=80)
    trainer = train(DATA, recipe, tmp_path / "run", config=TINY, max_images=8, heldout_count=4, log=lambda m: None)
    first = trainer.step(trainer_batch(trainer))["l1"]
    trainer = train(DATA, recipe, tmp_path / "run", config=TINY, max_images=400, heldout_count=4, log=lambda m: None)
    last = trainer.step(trainer_batch(trainer))
    assert last["l1"] < 0.7 * first
    assert "g_adv" in last and "d" in last  # the feature discriminator switched on
    assert trainer.state.images_seen >= 400
    assert any((tmp_path / "run").glob("samples_*.png"))


def trainer_batch(trainer: Trainer) -> torch.Tensor:
    from pipeline.training.data import load_faces
    from pipeline.training.generator_train import to_tensor

    files, _ = heldout_split(list_images(DATA), 4)
    return to_tensor(load_faces(DATA, files, trainer.config.resolution)[:8])


def test_compact_state_resumes_and_export_loads(tmp_path):
    recipe = recipe_with("ae")
    trainer = train(DATA, recipe, tmp_path / "run", config=TINY, max_images=32, heldout_count=4, log=lambda m: None)
    compact = tmp_path / "train_state.safetensors"
    trainer.save_compact(compact)
    resumed = Trainer(recipe, TINY, tmp_path / "other")
    resumed.load_compact(compact)
    assert resumed.state.images_seen == trainer.state.images_seen
    for a, b in zip(resumed.G_ema.parameters(), trainer.G_ema.parameters()):
        assert torch.allclose(a, b, atol=1e-2, rtol=1e-2)

    out = tmp_path / "model"
    export(trainer, DATA, out, heldout_count=4, log=lambda m: None)
    G = load_native(out / "generator.safetensors")
    E = load_encoder(out / "encoder.safetensors")
    held = (out / "heldout.txt").read_text()
    assert len([line for line in held.splitlines() if line.endswith(".jpg")]) == 4
    with torch.no_grad():
        img, _ = G([torch.randn(2, TINY.style_dim)])
        recon = G.synthesis(E.wplus(img))
    assert img.shape == recon.shape == (2, 3, 32, 32)
    # and random faces come from a prior fitted to its encoded training faces
    prior = load_prior(out / "prior.safetensors", G)
    assert prior.sample(2, seed=1).shape == (2, G.n_latent, TINY.style_dim) and prior.info["faces"] == len(list_images(DATA)) - 4


def test_snapshots_keep_each_point_of_the_run_and_resume_there(tmp_path):
    recipe = recipe_with("ae", batch=4)
    run = tmp_path / "run"
    train(DATA, recipe, run, config=TINY, max_images=24, heldout_count=4, snapshot_every=8, log=lambda m: None)
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    assert snaps == ["state_00000008.safetensors", "state_00000016.safetensors", "state_00000024.safetensors"]
    resumed = Trainer(recipe, TINY, tmp_path / "other")
    resumed.load_compact(run / "snapshots" / snaps[1])
    assert resumed.state.images_seen == 16


def test_a_longer_ema_half_life_moves_the_averaged_weights_less():
    moved = {}
    for half_life in (10_000, 40_000):
        trainer = Trainer(recipe_with("ae", ema_half_life=half_life), TINY, Path("unused"))
        trainer.state.step = 1_000_000  # long past the averages' warm-up
        before = [p.clone() for p in trainer.G_ema.parameters()]
        with torch.no_grad():
            for p in trainer.G.parameters():
                p.add_(1.0)
        trainer.update_averages(16)
        moved[half_life] = max((a - b).abs().max().item() for a, b in zip(trainer.G_ema.parameters(), before))
    for half_life, step in moved.items():
        assert step == pytest.approx(1 - 0.5 ** (16 / half_life), rel=0.02)  # float32 rounding of the small step


def test_a_state_goes_on_under_another_recipes_learning_rates(tmp_path):
    # An annealed stage resumes a run's full state with lower rates; the optimiser's stored
    # groups must not bring the old ones back.
    run = tmp_path / "run"
    train(DATA, recipe_with("ae-pgan", batch=4, adversarial_after=0), run, config=TINY, max_images=8,
          heldout_count=4, log=lambda m: None)  # fmt: skip
    slower = recipe_with("ae-pgan", batch=4, adversarial_after=0, lr=0.0001, d_lr=0.00005)
    resumed = train(DATA, slower, run, config=TINY, max_images=12, heldout_count=4, log=lambda m: None)
    assert resumed.state.images_seen >= 12
    assert {g["lr"] for g in resumed.opt_g.param_groups} == {0.0001}
    assert {g["lr"] for g in resumed.opt_d.param_groups} == {0.00005}
    assert resumed.opt_g.state  # the stored moments came with it


def test_offset_dropout_decodes_dropped_faces_from_w_alone(tmp_path):
    # Samples are made from one W per face; ae-w trains part of each batch that way.
    assert RECIPES["ae-w"].offset_dropout == 0.5
    trainer = Trainer(recipe_with("ae-w", offset_dropout=1.0, batch=4), TINY, tmp_path / "run")
    codes = []
    synthesis = trainer.G.synthesis
    trainer.G.synthesis = lambda ws, **kw: codes.append(ws.detach()) or synthesis(ws, **kw)
    trainer.step(trainer_batch(trainer)[:4])
    ws = codes[0]
    assert ws.shape[1] == TINY.n_latent and torch.equal(ws, ws[:, :1].expand_as(ws))  # no per-layer offsets

    trainer = Trainer(recipe_with("ae-w", offset_dropout=0.0, batch=4), TINY, tmp_path / "run2")
    torch.nn.init.normal_(trainer.E.to_offsets.bias)  # offsets start at zero: give them some
    codes.clear()
    synthesis = trainer.G.synthesis
    trainer.G.synthesis = lambda ws, **kw: codes.append(ws.detach()) or synthesis(ws, **kw)
    trainer.step(trainer_batch(trainer)[:4])
    assert not torch.equal(codes[0], codes[0][:, :1].expand_as(codes[0]))  # offsets kept


def test_model_card_records_recipe_numbers_and_limits(tmp_path):
    import json
    from dataclasses import asdict

    from pipeline.training.generator_train import TrainState
    from pipeline.training.model_card import write_model_card

    (tmp_path / "generator.json").write_text(json.dumps(TINY.to_dict()))
    (tmp_path / "heldout.txt").write_text("# held out\na.jpg\nb.jpg\n")
    state = asdict(TrainState(images_seen=72_000, cpu_seconds=3600.0, wall_seconds=7200.0))
    (tmp_path / "training.json").write_text(json.dumps({"recipe": asdict(RECIPES["ae-w"]), "train": state, "train_files": 10}))
    samples = {"age_mean": 22.0, "age_std": 9.0, "female_share": 0.7, "identity_pairwise_distance": 0.6}
    real = {"age_mean": 35.0, "age_std": 18.0, "female_share": 0.5, "identity_pairwise_distance": 0.83}
    bench = {"kid_trunc1.0": 2500.0, "reconstruction": {"psnr": 21.5}, "attributes": {"samples": samples, "real": real}}
    card = write_model_card(tmp_path, bench, {"ae, 50.4k images": {"kid_trunc1.0": 3261.0}}).read_text()
    assert "| kid_trunc1.0 | 2500 |" in card and "| psnr | 21.5 |" in card and "Images seen: 72,000" in card
    assert "50% of each batch decoded from W alone" in card and "2 faces held out" in card
    assert "less varied than real faces" in card and "age 22 ± 9 vs 35 ± 18 years" in card
    assert '"ae, 50.4k images"' in card
    # The card names its own recipe, folder and EMA, and what reconstructed the held-out faces.
    assert f"--recipe ae-w --compact-state weights/{tmp_path.name}/train_state.safetensors" in card
    assert "EMA half-life 10k images" in card and "by the encoder alone" in card
    (tmp_path / "refiner.safetensors").write_bytes(b"")
    assert "by the encoder and its refiner" in write_model_card(tmp_path, bench).read_text()
    # A pixel critic is named as such, with its regulariser and augmentations.
    from pipeline.training.model_card import critic_line

    line = critic_line(asdict(RECIPES["sharp-128-r1-cutout-anchor-ages"]))
    assert "hinge PatchGAN" in line and "cutout 0.5" in line and "R1 gamma 1.0" in line and "SqueezeNet" not in line


def test_sharp_recipe_grows_the_model_and_trains_it_against_a_patch_critic(tmp_path):
    import torch.nn.functional as F

    from pipeline.training.sharp import SharpTrainer, diff_augment

    small = train(DATA, recipe_with("ae", batch=4), tmp_path / "small", config=TINY, max_images=8, heldout_count=4,
                  log=lambda m: None)  # fmt: skip
    compact = tmp_path / "small.safetensors"
    small.save_compact(compact)
    recipe = recipe_with("sharp-128", batch=4, freeze_images=8, adversarial_after=8, manifold_codes=3)
    recipe = RECIPES["sharp-128"].__class__(**{**recipe.__dict__, "resolution": 64})
    # Growing keeps what the small model draws: the new block starts as the upsampled old image.
    grown = SharpTrainer(recipe, grown_config(TINY, 64), tmp_path / "probe")
    grown.load_compact(compact)
    assert grown.state.grown_at == small.state.images_seen
    w = torch.randn(2, TINY.style_dim)
    with torch.no_grad():
        before = small.G_ema.synthesis(w.unsqueeze(1).repeat(1, TINY.n_latent, 1), randomize_noise=False)
        after = grown.G_ema.synthesis(w.unsqueeze(1).repeat(1, grown.config.n_latent, 1), randomize_noise=False)
    assert after.shape[-1] == 64 and (F.avg_pool2d(after, 2) - before).abs().mean() < 0.05 * before.abs().mean()

    trainer = train(DATA, recipe, tmp_path / "run", config=TINY, max_images=small.state.images_seen + 24, heldout_count=4,
                    compact_state=compact, trainer_class=SharpTrainer, log=lambda m: None)  # fmt: skip
    logs = trainer.step(trainer_batch(trainer)[:4])
    assert {"g_adv", "adv_weight", "d"} <= set(logs) and logs["frozen"] == 0.0
    assert trainer.config.resolution == 64 and diff_augment(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    # The compact state resumes at the grown resolution.
    trainer.save_compact(tmp_path / "grown.safetensors")
    again = SharpTrainer(recipe, trainer.config, tmp_path / "again")
    again.load_compact(tmp_path / "grown.safetensors")
    assert again.state.images_seen == trainer.state.images_seen and again.state.grown_at == small.state.images_seen


def test_a_top_only_recipe_trains_the_top_block_and_keeps_what_w_means(tmp_path):
    from pipeline.training.sharp import SharpTrainer, is_new_parameter

    small = train(DATA, recipe_with("ae", batch=4), tmp_path / "small", config=TINY, max_images=8, heldout_count=4,
                  log=lambda m: None)  # fmt: skip
    small.save_compact(tmp_path / "small.safetensors")
    recipe = recipe_with("sharp-128-top", batch=4, adversarial_after=0, manifold_codes=3)
    recipe = RECIPES["sharp-128-top"].__class__(**{**recipe.__dict__, "resolution": 64})
    trainer = SharpTrainer(recipe, grown_config(TINY, 64), tmp_path / "run")
    trainer.load_compact(tmp_path / "small.safetensors")
    trainer.state.grown_at = -10**9  # long after growing: a plain recipe would train every block
    before = {k: v.detach().clone() for k, v in trainer.G.named_parameters()}
    encoder = {k: v.detach().clone() for k, v in trainer.E.named_parameters()}
    averaged = {k: v.detach().clone() for k, v in trainer.E_ema.state_dict().items()}
    assert trainer.step(trainer_batch(trainer)[:4])["frozen"] == 1.0
    changed = [k for k, v in trainer.G.named_parameters() if not torch.equal(v, before[k])]
    assert changed and all(is_new_parameter(k, len(trainer.G.to_rgbs)) for k in changed)
    # the encoder's codes, and so the prior and directions, stay
    assert all(torch.equal(v, encoder[k]) for k, v in trainer.E.named_parameters())
    assert all(torch.equal(v, averaged[k]) for k, v in trainer.E_ema.state_dict().items())  # what ships, too


def test_edited_codes_follow_the_directions_given_and_resume_with_them(tmp_path):
    from safetensors.torch import save_file

    from pipeline.errors import UserError
    from pipeline.training.sharp import SharpTrainer

    recipe = recipe_with("sharp-128", batch=4, freeze_images=0, adversarial_after=0, manifold_codes=3)
    recipe = RECIPES["sharp-128"].__class__(**{**recipe.__dict__, "resolution": 32})
    axis = torch.zeros(TINY.style_dim)
    axis[3] = 2.0
    directions = tmp_path / "directions.safetensors"
    save_file({"age": axis, "age.alone": torch.ones(TINY.style_dim), "age.layers": torch.ones(2, TINY.style_dim)}, str(directions))
    run = tmp_path / "run"
    trainer = train(DATA, recipe, run, config=TINY, max_images=8, heldout_count=4, trainer_class=SharpTrainer,
                    edit_directions=directions, log=lambda m: None)  # fmt: skip
    # One unit axis, the fitted direction only (not its variant fitted alone, nor per-layer entries).
    assert trainer.directions.shape == (1, TINY.style_dim) and trainer.directions[0, 3] == 1.0
    w, offsets = torch.zeros(4, TINY.style_dim), torch.zeros(4, TINY.n_latent, TINY.style_dim)
    edited = trainer.manifold_codes(w, offsets, 3)[-1]  # the last third: encoded codes moved along the axis
    moved = edited - edited[:, 3:4] * trainer.directions[0]
    assert edited[:, 3].abs().min() > 0 and moved.abs().max() < 1e-5
    # Resuming from the full state keeps them without the option.
    again = train(DATA, recipe, run, config=TINY, max_images=16, heldout_count=4, trainer_class=SharpTrainer,
                  log=lambda m: None)  # fmt: skip
    assert torch.equal(again.directions, trainer.directions)
    # Recipes without edited codes say so.
    with pytest.raises(UserError, match="no edited codes"):
        train(DATA, recipe_with("ae", batch=4), tmp_path / "ae", config=TINY, max_images=4, heldout_count=4,
              edit_directions=directions, log=lambda m: None)  # fmt: skip


def test_critic_translation_shifts_each_image_by_its_own_offset_with_zeros_moving_in():
    from pipeline.training.sharp import random_translate

    torch.manual_seed(0)
    images = torch.rand(6, 3, 16, 16) + 1  # no zeros of their own
    shifted = random_translate(images, translation=0.125)  # up to 2 px each way
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    windows = [{(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(shifted[i], padded[i, :, dy : dy + 16, dx : dx + 16])}
               for i in range(len(images))]  # fmt: skip
    assert all(len(w) == 1 for w in windows)  # exactly one window of its own image
    assert len({next(iter(w)) for w in windows}) > 1  # not one shift for the whole batch


def test_critic_cutout_hides_one_square_per_image_where_it_falls():
    from pipeline.training.sharp import random_cutout

    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16) + 1
    out = random_cutout(images, ratio=0.5)
    hidden = out[:, 0] == 0
    assert torch.equal(out[~hidden[:, None].expand_as(out)], images[~hidden[:, None].expand_as(out)])
    assert ((out == 0) == hidden[:, None]).all()  # the same square in every channel
    areas = hidden.sum((1, 2))
    assert areas.max() == 64 and areas.min() < 64  # an 8-px square, clipped where it crosses the edge
    assert len({tuple(h.nonzero()[0].tolist()) for h in hidden if h.any()}) > 8  # placed afresh per image


def test_r1_penalty_is_the_squared_gradient_of_the_critic_at_the_real_images(tmp_path):
    from pipeline.training.sharp import SharpTrainer, r1_penalty

    linear = torch.nn.Conv2d(3, 1, 16)  # one logit per 16-px image: grad = its weight
    images = torch.rand(4, 3, 16, 16)
    assert torch.isclose(r1_penalty(linear, images), linear.weight.square().sum())
    blind = torch.nn.Conv2d(3, 1, 16)
    torch.nn.init.zeros_(blind.weight)
    assert r1_penalty(blind, images) == 0
    # Trained with it, the critic's step differs from one without it.
    assert RECIPES["sharp-128-r1-anchor-ages"].r1_gamma > 0 and RECIPES["sharp-128-adv3-anchor-ages"].r1_gamma == 0
    critics = []
    for gamma in (0.0, 1.0):
        trainer = SharpTrainer(recipe_with("sharp-128-r1-anchor-ages", batch=4, resolution=32, adversarial_after=0,
                                           r1_every=1, r1_gamma=gamma), TINY, tmp_path / f"run{gamma}")  # fmt: skip
        torch.manual_seed(1)
        for p in trainer.D.parameters():
            torch.nn.init.normal_(p, std=0.05)
        real = trainer_batch(trainer)[:4]
        torch.manual_seed(2)
        trainer.step(real)
        critics.append(torch.cat([p.detach().flatten() for p in trainer.D.parameters()]))
    assert not torch.allclose(critics[0], critics[1])


def test_training_on_a_device_pytorch_does_not_have_is_refused(tmp_path, capsys):
    from pipeline.cli import main

    code = main(["train", "generator", "--data", str(DATA), "--recipe", "sharp-128", "--device", "cuda:7",
                 "--run-dir", str(tmp_path / "run"), "--max-images", "0"])  # fmt: skip
    assert code == 2 and "not available" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_snapshot_interval_that_is_not_positive_is_refused(tmp_path, capsys):
    from pipeline.cli import main

    code = main(["train", "generator", "--data", str(DATA), "--recipe", "ae", "--snapshot-every", "0",
                 "--run-dir", str(tmp_path / "run"), "--max-images", "0"])  # fmt: skip
    assert code == 2 and "--snapshot-every must be a positive" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_anchored_recipe_holds_the_spread_of_the_codes_both_ways(tmp_path):
    from pipeline.training.sharp import SharpTrainer

    recipe = recipe_with("sharp-128-adv3-anchor", batch=4, resolution=32, w_variance=1.0)
    trainer = SharpTrainer(recipe, TINY, tmp_path / "run")  # the running mean starts at zero
    torch.manual_seed(0)
    unit = torch.randn(4096, TINY.style_dim)
    assert trainer.spread_penalty(unit).item() < 1e-3
    for scale, pull in ((3.0, "in"), (0.3, "out")):
        codes = (scale * unit[:64]).requires_grad_(True)
        penalty = trainer.spread_penalty(codes)
        penalty.backward()
        assert penalty.item() > 0.5
        # Descending it moves every code towards the mean when they spread too far, away when too little.
        radial = (codes.grad * codes).sum(1)
        assert (radial > 0).all() if pull == "in" else (radial < 0).all()


def test_age_balanced_drawing_flattens_the_ages_and_trains(tmp_path):
    import numpy as np

    from pipeline.training.data import age_balance_weights

    names = [f"{age}_0_0_x.jpg" for age in [25] * 90 + [70] * 10] + ["unlabelled.jpg"]
    uniform, flat = age_balance_weights(names, 0.0), age_balance_weights(names, 1.0)
    old = np.array([n.startswith("70_") for n in names])
    assert np.isclose(uniform.sum(), 1) and np.isclose(flat.sum(), 1)
    assert np.isclose(uniform[old].sum(), 10 / 101) and np.isclose(flat[old].sum(), 1 / 3)  # three bins, drawn alike
    assert 10 / 101 < age_balance_weights(names, 0.5)[old].sum() < 1 / 3
    trainer = train(DATA, recipe_with("ae", batch=4, age_balance=0.5), tmp_path / "run", config=TINY, max_images=8,
                    heldout_count=4, log=lambda m: None)  # fmt: skip
    assert trainer.state.images_seen == 8


def test_bfloat16_training_follows_float32_and_is_recorded(tmp_path):
    from pipeline.training.precision import use_bf16
    from pipeline.training.sharp import SharpTrainer

    recipe = recipe_with("sharp-128-adv3-anchor-ages", batch=4, resolution=32, adversarial_after=0)
    trainer = SharpTrainer(recipe, TINY, tmp_path / "probe")
    real = trainer_batch(trainer)[:4]
    params = [*trainer.G.parameters(), *trainer.E.parameters()]

    def gradient(bf16: bool) -> tuple[torch.Tensor, float]:
        torch.manual_seed(0)  # the same latent noise both times
        for p in params:
            p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            w, _, fake = trainer.reconstruct(real)
            loss = (fake - real).abs().mean() - 0.1 * trainer.D(fake).mean()
        assert w.dtype == torch.float32  # the codes stay float32 for the prior and the code arithmetic
        loss.backward()
        return torch.cat([p.grad.flatten().float() for p in params if p.grad is not None]), loss.item()

    (g32, l32), (g16, l16) = gradient(False), gradient(True)
    assert abs(l16 - l32) < 0.02 * abs(l32)
    assert torch.nn.functional.cosine_similarity(g32, g16, 0) > 0.9

    run = tmp_path / "run"
    trained = train(DATA, recipe, run, config=TINY, max_images=8, heldout_count=4, trainer_class=SharpTrainer,
                    precision="bf16", log=lambda m: None)  # fmt: skip
    assert trained.state.bf16_images == 8 and all(torch.isfinite(p).all() for p in trained.G_ema.parameters())
    trained = train(DATA, recipe, run, config=TINY, max_images=12, heldout_count=4, trainer_class=SharpTrainer,
                    precision="fp32", log=lambda m: None)  # fmt: skip
    assert (trained.state.images_seen, trained.state.bf16_images) == (12, 8)  # resumed, the count kept
    assert use_bf16("fp32", "cpu") is False and use_bf16("bf16", "cpu") is True
    with pytest.raises(ValueError):
        use_bf16("fp8", "cpu")
