"""Finding, saving and loading edit directions: SVM fits, layer choice, SeFa, the file format."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import UserError
from pipeline.latent.directions import (
    Direction,
    layer_spans,
    load_directions,
    read_report,
    save_directions,
    with_scales,
)
from pipeline.latent.edit import apply_edits, orthogonalize
from pipeline.models.generator import Generator, GeneratorConfig
from pipeline.training.directions import choose_layers, cosine, fit_direction, sefa_components

ROOT = Path(__file__).resolve().parents[1]
FFHQ_DIRECTIONS = ROOT / "weights" / "ffhq-1024" / "stylegan2_ffhq_w_directions.safetensors"
TINY = GeneratorConfig(resolution=32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16})


def unit(v) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32)
    return t / t.norm()


def test_svm_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(3000, 64))
    planted = rng.normal(size=64)
    planted /= np.linalg.norm(planted)
    score = codes @ planted + 0.2 * rng.normal(size=3000)
    fit = fit_direction(codes, score)
    assert cosine(fit.normal, planted) > 0.95  # points the way the score grows
    assert fit.accuracy > 0.95 and fit.correlation > 0.9
    # A score with nothing linear behind it gives a fit no better than chance.
    noise = fit_direction(codes, rng.normal(size=3000))
    assert noise.accuracy < 0.7


def test_direction_follows_how_codes_move_in_an_anisotropic_space():
    """With W stretched unevenly, the edit is the shift of the codes as the score grows
    (covariance times the score's weights), not the raw separating normal, which leans to the
    thin axes where a standard deviation barely moves anything."""
    rng = np.random.default_rng(2)
    spread = np.r_[np.full(8, 4.0), np.full(56, 0.25)]
    codes = rng.normal(size=(3000, 64)) * spread
    weights = np.r_[np.full(8, 0.25), np.full(56, 4.0)] * rng.choice([-1.0, 1.0], size=64)
    score = codes @ weights + rng.normal(size=3000)
    fit = fit_direction(codes, score)
    shift = (spread**2) * weights
    assert cosine(fit.normal, shift) > 0.9

    # one standard deviation along it moves the score more than along the raw weights
    def score_change_per_sd(v):
        v = v / np.linalg.norm(v)
        return abs(v @ weights) * (codes @ v).std()

    assert score_change_per_sd(fit.normal) > 1.5 * score_change_per_sd(weights)


def test_svm_on_given_labels():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(1000, 16))
    labels = (codes[:, 3] > 0).astype(float)
    fit = fit_direction(codes, labels, labels=labels)
    assert abs(fit.normal[3]) > 0.9 and fit.normal[3] > 0 and fit.accuracy > 0.9


def test_conditioning_makes_the_edit_orthogonal_and_cuts_the_projection():
    age, gender = unit([1.0, 0.8, 0.0, 0.0]), unit([0.0, 1.0, 0.0, 0.0])
    directions = {"age": Direction("age", age, (0, 4), scale=2.0), "gender": Direction("gender", gender, (0, 4))}
    w = torch.zeros(1, 4, 4)
    plain = apply_edits(w, directions, {"age": 2.0})
    held = apply_edits(w, directions, {"age": 2.0}, conditioning=["gender"])
    moved_plain, moved_held = plain[0, 0], held[0, 0]
    assert float(moved_plain @ gender) > 2.0  # age drags gender along ...
    assert abs(float(moved_held @ gender)) < 1e-5  # ... unless gender is held
    assert abs(float(moved_held.norm()) - 4.0) < 1e-5  # the edit keeps its strength x scale
    assert abs(float(orthogonalize(age, [gender]) @ gender)) < 1e-6
    with pytest.raises(UserError, match="unknown direction to condition on"):
        apply_edits(w, directions, {"age": 1.0}, conditioning=["beard"])


def test_save_and_load_round_trip(tmp_path):
    a, b = unit(torch.randn(32)), unit(torch.randn(32))
    directions = {
        "smile": Direction("smile", a, (2, 6), 1.5, "attribute", {"accuracy": 0.91, "change_per_sd": {"coarse": 0.1}}),
        "age": Direction("age", b, (0, 4), 0.7, "attribute", {"accuracy": 0.88}),
        "sefa0_yaw": Direction("sefa0_yaw", -a, (0, 8), 0.3, "discovered", {"moves": {"yaw": 0.4}}),
    }
    path = save_directions(tmp_path / "d.safetensors", directions, "tiny", {"n": 10})
    loaded = load_directions(path, 32, 8)
    assert list(loaded) == ["smile", "age", "sefa0_yaw"]  # the saved order, not alphabetical
    for name, d in directions.items():
        got = loaded[name]
        assert torch.allclose(got.vector, d.vector) and got.layers == d.layers and got.scale == pytest.approx(d.scale)
        assert (
            got.kind == d.kind
            and got.info["accuracy" if d.kind == "attribute" else "moves"]
            == d.info["accuracy" if d.kind == "attribute" else "moves"]
        )
    assert read_report(path) == {"n": 10}
    # Layer ranges are clipped to a smaller model's rows; a model of another width is refused.
    assert load_directions(path, 32, 6)["sefa0_yaw"].layers == (0, 6)
    with pytest.raises(UserError, match="the model needs"):
        load_directions(path, 64, 8)


def test_published_ffhq_directions_load():
    d = load_directions(FFHQ_DIRECTIONS, 512, 18)
    assert list(d)[:3] == ["age", "pose", "smile"]
    assert [k for k in d if d[k].kind == "discovered"] == [f"ganspace{i}" for i in range(5)]
    for direction in d.values():
        assert abs(float(direction.vector.norm()) - 1) < 1e-5
    assert d["pose"].layers == (0, 18) and d["age"].kind == "published"
    assert math.isnan(d["age"].scale) and d["ganspace0"].scale == pytest.approx(2.8556, abs=1e-3)


def test_unknown_scales_are_measured_on_the_model():
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    known = Direction("a", unit(torch.randn(32)), (0, 8), 0.25)
    unknown = Direction("b", unit(torch.randn(32)), (0, 8), math.nan)
    out = with_scales({"a": known, "b": unknown}, G, n=2000)
    assert out["a"].scale == 0.25
    with torch.no_grad():
        w = G.mapping(torch.randn(4000, 32))
    assert out["b"].scale == pytest.approx(float((w @ unknown.vector).std()), rel=0.1)


def test_layers_keep_most_of_the_change_on_the_fewest_rows():
    spans = layer_spans(10)
    assert spans == {"coarse": (0, 4), "coarse+middle": (0, 8), "coarse+middle+fine": (0, 10), "middle": (4, 8),
                     "middle+fine": (4, 10), "fine": (8, 10)}  # fmt: skip
    effects = {
        "coarse": 0.1,
        "coarse+middle": 0.9,
        "coarse+middle+fine": 1.0,
        "middle": 0.92,
        "middle+fine": 0.95,
        "fine": 0.05,
    }
    assert choose_layers(effects, spans, 10) == (4, 8)
    effects["middle"] = 0.5
    assert choose_layers(effects, spans, 10) == (4, 10)  # 6 rows keeping 95% beat 8 keeping 90%
    assert choose_layers({k: -0.1 for k in spans}, spans, 10) == (0, 10)  # no change to keep: all rows


def test_sefa_components_are_orthonormal_eigenvectors_of_the_modulation_weights():
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    components, values = sefa_components(G, k=4)
    assert components.shape == (4, 32)
    assert torch.allclose(components @ components.T, torch.eye(4), atol=1e-4)
    assert (values[:-1] >= values[1:]).all()
    # The first one changes the (unit-row) style outputs most: more than any random direction.
    weights = torch.cat(
        [m.modulation.weight.detach() * m.modulation.scale for m in G.modules() if hasattr(m, "modulation")]
    )
    weights = weights / weights.norm(dim=1, keepdim=True)
    assert float((weights @ components[0]).square().sum()) == pytest.approx(float(values[0]), rel=1e-4)
    random = torch.nn.functional.normalize(torch.randn(200, 32), dim=1)
    assert float((weights @ random.T).square().sum(0).max()) < float(values[0])


def test_sefa_in_units_of_the_spread_of_w():
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    plain, _ = sefa_components(G, k=1)
    # Where W barely varies along the plain top component, it moves the styles little per standard deviation.
    w = torch.randn(5000, 32)
    w -= 0.999 * (w @ plain[0])[:, None] * plain[0]  # W hardly varies along it
    scaled, _ = sefa_components(G, k=1, w=w)
    weights = torch.cat(
        [m.modulation.weight.detach() * m.modulation.scale for m in G.modules() if hasattr(m, "modulation")]
    )
    weights = weights / weights.norm(dim=1, keepdim=True)

    def change_per_sd(v: torch.Tensor) -> float:
        return float((weights @ v).square().sum() * (w @ v).var())

    assert abs(float(scaled[0].norm()) - 1) < 1e-5
    assert change_per_sd(scaled[0]) > 100 * change_per_sd(plain[0])
    random = torch.nn.functional.normalize(torch.randn(200, 32), dim=1)
    assert change_per_sd(scaled[0]) >= max(change_per_sd(v) for v in random)


def test_a_direction_keeps_its_variant_fitted_alone(tmp_path):
    from pipeline.latent.directions import Direction, load_directions, save_directions
    from pipeline.latent.edit import apply_edits

    kept, alone = torch.zeros(8), torch.zeros(8)
    kept[0], alone[1] = 1.0, 1.0
    d = Direction("age", kept, (0, 4), 2.0, "attribute", {"keeps": ["gender"], "alone_scale": 3.0}, alone)
    path = save_directions(tmp_path / "d.safetensors", {"age": d})
    loaded = load_directions(path, 8, 4)["age"]
    assert torch.equal(loaded.alone, alone) and loaded.info["keeps"] == ["gender"]
    code = torch.zeros(1, 4, 8)
    on = apply_edits(code, {"age": loaded}, {"age": 1.0})
    off = apply_edits(code, {"age": loaded}, {"age": 1.0}, keep_rest=False)
    assert on[0, 0, 0] == 2.0 and on[0, 0, 1] == 0  # the direction that keeps the rest, its own scale
    assert off[0, 0, 1] == 3.0 and off[0, 0, 0] == 0  # the one fitted alone, with its scale


def test_covariate_fit_separates_an_attribute_from_what_goes_with_it():
    """Older faces in the data are also darker: the age direction must not carry the skin's."""
    from pipeline.training.covariate_directions import fit_conditional, held_attributes

    rng = np.random.default_rng(0)
    n = 4000
    age = rng.normal(size=n)
    skin = 0.8 * age + 0.6 * rng.normal(size=n)  # correlated with age
    race = rng.integers(0, 5, n)
    b_age, b_skin = np.eye(16)[0], np.eye(16)[1]
    w = np.outer(age, b_age) + np.outer(skin, b_skin) + 0.1 * rng.normal(size=(n, 16))
    direction = fit_conditional(w, age, [skin], race)
    assert abs(direction @ b_skin) < 0.05 and direction @ b_age > 0.95
    alone = np.linalg.lstsq(np.column_stack([age, np.ones(n)]), w, rcond=None)[0][0]
    assert alone @ b_skin > 0.7  # fitted alone, age drags the skin along
    assert "skin" in held_attributes("age") and "smile" not in held_attributes("happy")


def test_age_is_fitted_on_the_mens_slope_when_women_drift_towards_men_as_they_age():
    """In the data, women's codes move towards men's as they age: the pooled slope carries that
    drift (and turned aged women into men), the men's slope does not."""
    from pipeline.training.covariate_directions import MEN_SLOPE, fit_conditional

    rng = np.random.default_rng(2)
    n = 4000
    age, female = rng.normal(size=n), rng.integers(0, 2, n).astype(float)
    b_age, b_male = np.eye(16)[0], np.eye(16)[1]
    w = np.outer(age, b_age) + np.outer(1 - female + 0.5 * age * female, b_male) + 0.1 * rng.normal(size=(n, 16))
    race = rng.integers(0, 5, n)
    pooled = fit_conditional(w, age, [female], race)
    men = fit_conditional(w, age, [female], race, interaction=female)
    pooled, men = pooled / np.linalg.norm(pooled), men / np.linalg.norm(men)
    assert pooled @ b_male > 0.2  # ageing also moves towards men
    assert abs(men @ b_male) < 0.05 and men @ b_age > 0.99
    assert "age" in MEN_SLOPE


def test_decorrelation_cancels_what_a_direction_moves_but_keeps():
    """A 'sad' direction that also opens the eyes is corrected by the eyes' own direction, so the
    eyes stay put and sadness still moves; a clean direction is left as it was."""
    from pipeline.training.decorrelation import COLUMNS, decorrelate, median_leak

    rng = np.random.default_rng(1)
    dim = 24
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    readout = {c: torch.tensor(basis[:, i], dtype=torch.float32) for i, c in enumerate(COLUMNS[:-1])}  # attribute = readout . w

    def table_of(directions):
        out = {}
        for name, d in directions.items():
            step = 2 * d.scale * d.vector
            out[name] = {c: float(readout[c] @ step) if c in readout else 0.0 for c in COLUMNS}
            out[name]["identity"] = 0.3
        return out

    eyes = Direction("eyes_open", readout["eyes_open"], (0, 4), 0.5)
    others = sum(readout[c] for c in readout if c not in ("sad", "eyes_open", "pitch"))
    sad_vec = unit(readout["sad"] + 0.6 * readout["eyes_open"] + 0.4 * readout["pitch"] + 0.3 * others)
    sad = Direction("sad", sad_vec, (0, 4), 0.5)
    pitch = Direction("pitch", readout["pitch"], (0, 4), 0.5)
    directions = {"eyes_open": eyes, "sad": sad, "pitch": pitch}
    table = table_of(directions)
    assert median_leak(table, "sad") > 0.1 >= median_leak(table, "eyes_open")
    held = lambda name: ("eyes_open", "pitch", "age") if name == "sad" else ("sad",)  # noqa: E731
    fixed = decorrelate(directions, table, held, goal=0.1)
    after = table_of(fixed)
    assert abs(after["sad"]["eyes_open"]) < 0.02 and abs(after["sad"]["pitch"]) < 0.02
    assert abs(after["sad"]["smile"] - table["sad"]["smile"]) < 0.1  # what it does not keep is not touched
    assert after["sad"]["sad"] > 0.8 * table["sad"]["sad"]
    assert set(fixed["sad"].info["corrected_by"]) == {"eyes_open", "pitch"}
    assert fixed["eyes_open"] is eyes and fixed["pitch"] is pitch
    # the corrected direction is an ordinary direction: it edits, saves and loads
    moved = apply_edits(torch.zeros(1, 4, dim), fixed, {"sad": 1.0})
    assert torch.allclose(moved[0, 0], fixed["sad"].scale * fixed["sad"].vector, atol=1e-5)


def test_a_kept_attribute_held_on_fewer_rows_still_corrects_and_a_correction_that_does_not_help_is_undone():
    """Angry (all rows) moved the gender, whose direction starts at row 3: the gender direction
    corrects it on angry's rows; a correction measured to leak more is dropped again."""
    from pipeline.training.decorrelation import COLUMNS, decorrelate, keep_if_better

    dim = 8
    axes = {c: torch.eye(dim)[i] for i, c in enumerate(("angry", "gender", "smile"))}
    angry = Direction("angry", unit(axes["angry"] + 0.8 * axes["gender"]), (0, 4), 1.0)
    gender = Direction("gender", axes["gender"], (3, 4), 1.0)
    directions = {"angry": angry, "gender": gender}

    def row(rest: float, **moves):
        return {c: moves.get(c, rest) for c in COLUMNS}

    # the table as measured at +2 sd with gender read along its axis
    table = {"angry": row(0.5, angry=1.0, gender=2 * float(angry.vector @ axes["gender"])), "gender": row(0.0, gender=2.0)}
    fixed = decorrelate(directions, table, lambda name: ("gender",), goal=0.1)
    assert set(fixed["angry"].info["corrected_by"]) == {"gender"}
    assert abs(float(fixed["angry"].vector @ axes["gender"])) < 1e-5  # the gender move is cancelled
    worse, better = {"angry": row(0.6, angry=1.0)}, {"angry": row(0.1, angry=1.0)}
    assert keep_if_better(directions, fixed, table, worse)["angry"] is angry
    assert keep_if_better(directions, fixed, table, better)["angry"] is fixed["angry"]


def test_the_shipped_directions_record_their_rows_and_corrections():
    from pipeline.training.covariate_directions import held_attributes
    from pipeline.training.decorrelation import MAX_SKIPPED_ROWS

    path = ROOT / "weights" / "utkface-64" / "directions.safetensors"
    report = read_report(path)
    loaded = load_directions(path, 256, 10)
    assert "decorrelated" in report and report["rows"]
    for name, rows in report["rows"].items():
        assert tuple(rows) == loaded[name].layers and rows[0] <= MAX_SKIPPED_ROWS and rows[1] == 10
        assert str(rows[0]) in loaded[name].info["rows_tried"]
    assert any(rows[0] > 0 for rows in report["rows"].values())  # some edits keep the face's shape rows
    for name, fix in report["decorrelated"].items():
        assert fix["median_leak_before"] > 0.7 * 0.25
        assert set(fix["corrected_by"]) <= set(held_attributes(name))
        assert loaded[name].info["corrected_by"] == fix["corrected_by"]


def test_an_edit_leaves_out_the_coarse_rows_that_change_the_person_when_it_can():
    from pipeline.training.decorrelation import first_row

    # (effect, identity distance) by first row: row 2 keeps 90% of the effect and the person best
    assert first_row({0: (1.0, 0.59), 1: (0.99, 0.55), 2: (0.92, 0.49), 3: (0.57, 0.47)}) == 2
    assert first_row({0: (1.0, 0.40), 1: (0.95, 0.45)}) == 0  # leaving rows out does not help
    assert first_row({0: (1.0, 0.40), 1: (0.95, 0.39)}) == 0  # ... or hardly
    assert first_row({0: (-0.01, 0.4), 1: (0.02, 0.3)}) == 0  # no effect to keep: all rows


def test_the_emotion_chip_is_cut_where_the_emotion_net_reads(one_thread):
    """The differentiable chip of the gradient directions is the chip ``analyze`` reads emotions from."""
    import torch.nn.functional as F

    from pipeline.faces import attributes
    from pipeline.latent.directions import random_w
    from pipeline.models.checkpoints import load_native
    from pipeline.models.render import from_uint8, render
    from pipeline.training.gradient_directions import _chip_grid

    G = load_native(ROOT / "weights" / "utkface-64" / "generator.safetensors")
    with torch.no_grad():
        face = render(G, random_w(G, 3)[:, None].repeat(1, G.n_latent, 1))[0]
    chip = attributes.face_chip(attributes.locate(face), attributes.EMOTION_CHIP, attributes.EMOTION_PADDING)
    grid = _chip_grid(face, face.shape[0])
    cut = F.grid_sample(from_uint8(face)[None], grid, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    cut = ((cut + 1) * 127.5).numpy()
    assert np.corrcoef(cut.ravel(), chip.astype(np.float32).ravel())[0, 1] > 0.98
    assert np.abs(cut - chip).mean() < 8


def test_an_emotion_refit_by_gradient_is_kept_only_where_it_does_better(one_thread, monkeypatch):
    from pipeline.models.checkpoints import load_native
    from pipeline.training import gradient_directions

    monkeypatch.setattr(gradient_directions, "CHECK_FACES", 4)
    G = load_native(ROOT / "weights" / "utkface-64" / "generator.safetensors")
    directions = load_directions(ROOT / "weights" / "utkface-64" / "directions.safetensors", G.style_dim, G.n_latent)
    out, report = gradient_directions.refit_by_gradient(G, directions, ["disgust"], n=4, log=lambda line: None)
    fit = report["disgust"]
    regression = fit["regression"]
    candidates = {k: v for k, v in fit.items() if k in ("raw", "whitened", "natural")}
    eligible = {k: v["gain"] for k, v in candidates.items()
                if v["gain"] > regression["gain"] and v["identity"] <= regression["identity"] + 0.05
                and v["leak"] <= max(regression["leak"], 0.175)}  # fmt: skip
    assert len(candidates) == 3
    assert fit["kept"] == (max(eligible, key=eligible.get) if eligible else "regression")
    new = out["disgust"]
    assert (new is not directions["disgust"]) == (fit["kept"] != "regression")
    assert set(out) == set(directions) and all(out[k] is directions[k] for k in directions if k != "disgust")
    if fit["kept"] != "regression":
        assert new.info["method"].startswith("emotion net gradient") and new.layers == directions["disgust"].layers
        for kept in new.info["keeps"]:  # what it keeps is projected out
            if kept in directions:
                assert abs(float(new.vector @ directions[kept].vector)) < 1e-4


def test_refit_by_gradient_says_what_it_takes(capsys):
    from pipeline import cli

    assert cli.main(["directions", "--refit-by-gradient", "age"]) == 2
    assert "takes emotions" in capsys.readouterr().err


def test_holding_the_colour_cancels_an_edits_colour_change_and_keeps_the_edit(one_thread):
    from dataclasses import replace

    from pipeline.latent.prior import sample_wplus
    from pipeline.models.checkpoints import load_native
    from pipeline.training.colour_hold import colour_change, held, region_masks

    G = load_native(ROOT / "weights" / "utkface-64" / "generator.safetensors")
    shipped = load_directions(ROOT / "weights" / "utkface-64" / "directions.safetensors", G.style_dim, G.n_latent)["smile"]
    vector, scale = shipped.axis(keep_rest=False)  # the smile fitted alone, whose colour no one held
    smile = replace(shipped, vector=vector, scale=scale)
    codes = sample_wplus(G, 8, seed=0)
    masks = region_masks(G, codes)
    assert 0 < masks["cheeks"].mean() < 0.1 and abs(masks["centre"].mean() - 0.75**2) < 0.05
    regions = [masks["cheeks"], masks["centre"]]
    before = colour_change(G, codes, smile, regions)
    fixed, recorded = held(G, codes, smile, regions)
    after = colour_change(G, codes, fixed, regions)
    assert np.allclose(recorded, before.numpy(), atol=0.01)
    assert before.abs().max() > 1  # levels of 255 per sd: the smile lightens or darkens the face
    assert after.abs().max() < 0.1 * before.abs().max()
    assert fixed.layers == smile.layers and float(fixed.vector @ smile.vector) > 0.9
