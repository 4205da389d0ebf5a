"""Creative features on the embedded model: mixing, expression transfer, edit to a target,
localized edits, augmentation sets, showcase exports and batch editing, as a user would see
them (through the package and the command line). Targets accept either outcome the product
promises, reached within tolerance or a clear message, so retrained weights keep them valid."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import cli, provenance
from pipeline.create.augment import label_agreement, make_variants, write_zip
from pipeline.create.showcase import contact_sheet, sweep_frames, write_gif
from pipeline.errors import UserError
from pipeline.faces.attributes import analyze, scores
from pipeline.latent.directions import Direction, random_w
from pipeline.latent.edit import apply_edits
from pipeline.latent.expression import expression_basis, transfer_expression
from pipeline.latent.mixing import mix_codes
from pipeline.latent.regions import REGIONS, blend, psnr_outside, region_mask
from pipeline.latent.target_edit import TOLERANCE, edit_to_target
from pipeline.models.render import render
from pipeline.studio.models import load_model_directions, read_model

FACES = Path(__file__).parent / "data" / "faces"
MODEL = "utkface-64"


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def model():
    m = read_model(MODEL)
    return m, load_model_directions(m, None)


@pytest.fixture(scope="module")
def face(model):
    m, _ = model
    G = m.generator
    return random_w(G, 3).unsqueeze(1).repeat(1, G.n_latent, 1)


def unit(v) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32)
    return t / t.norm()


# --------------------------------------------------------------------------- mixing


def test_mixing_interpolates_and_takes_layer_groups_from_the_second_face():
    a, b = torch.zeros(1, 10, 4), torch.ones(1, 10, 4)
    assert torch.equal(mix_codes(a, b, 0.0), a) and torch.equal(mix_codes(a, b, 1.0), b)
    half = mix_codes(a, b, 0.25, ["coarse"])
    assert torch.equal(half[0, :4], b[0, :4]) and torch.allclose(half[0, 4:], torch.full((6, 4), 0.25))
    with pytest.raises(UserError, match="between 0 and 1"):
        mix_codes(a, b, 1.5)
    with pytest.raises(UserError, match="unknown layer group"):
        mix_codes(a, b, 0.5, ["eyes"])


# --------------------------------------------------------------------------- expression


def test_expression_transfer_moves_only_along_expression_directions():
    dim, rows = 8, 6
    directions = {
        "happy": Direction("happy", unit([1, 0, 0, 0, 0, 0, 0, 0]), (0, 4)),
        "smile": Direction("smile", unit([1, 1, 0, 0, 0, 0, 0, 0]), (0, 4)),
        "age": Direction("age", unit([0, 1, 0, 1, 0, 0, 0, 0]), (0, 6)),  # identity: kept out of the transfer
    }
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, rows, dim, generator=g), torch.randn(1, rows, dim, generator=g)
    out = transfer_expression(a, b, directions)
    basis, (lo, hi) = expression_basis(directions)
    assert (lo, hi) == (0, 4)
    assert torch.allclose(out[:, lo:hi] @ basis, b[:, lo:hi] @ basis, atol=1e-5)  # B's expression
    rest = torch.eye(dim) - basis @ basis.T
    assert torch.allclose(out @ rest, a @ rest, atol=1e-5)  # everything else is A's
    assert torch.equal(out[:, hi:], a[:, hi:])
    assert torch.allclose((out - a)[0] @ directions["age"].vector, torch.zeros(rows), atol=1e-5)  # age untouched
    neutral = torch.randn(1, dim, generator=g)  # e.g. the mean W
    added = transfer_expression(a, b, directions, neutral, mode="add")
    assert torch.allclose(added[:, lo:hi] @ basis, (a + b - neutral[:, None])[:, lo:hi] @ basis, atol=1e-5)
    with pytest.raises(UserError, match="no expression directions"):
        transfer_expression(a, b, {"age": directions["age"]})
    with pytest.raises(UserError, match="neutral face"):
        transfer_expression(a, b, directions, mode="add")


# --------------------------------------------------------------------------- edit to a target


def test_edit_to_target_reaches_the_value_or_says_why(model, face):
    m, directions = model
    name = "age" if "age" in directions else next(iter(directions))
    start = scores(analyze(render(m.generator, face), identity=False)[0])[name]
    target = start + 10 if name == "age" else start
    result = edit_to_target(m.generator, face, directions, name, target)
    tolerance = TOLERANCE.get(name, result.tolerance)
    if result.reached:
        assert abs(result.value - target) <= tolerance and result.steps >= 1
        assert scores(analyze([result.image], identity=False)[0])[name] == pytest.approx(result.value, abs=1e-6)
    else:
        assert "not reached" in result.message or "without losing identity" in result.message
    assert result.history[0]["strength"] == 0 and len(result.history) == result.steps + 1


def test_edit_to_target_refuses_to_lose_identity(model, face):
    m, directions = model
    result = edit_to_target(m.generator, face, directions, "age", 95, identity_limit=0.01)
    assert not result.reached and "without losing identity" in result.message
    assert result.strength == 0 and torch.equal(result.wplus, face)  # the closest kept face is the start


def test_edit_to_target_checks_its_input(model, face):
    m, directions = model
    with pytest.raises(UserError, match="probability"):
        edit_to_target(m.generator, face, directions, "happy", 1.5)
    with pytest.raises(UserError, match="cannot measure"):
        edit_to_target(m.generator, face, directions, "sefa0_angry", 1.0)


# --------------------------------------------------------------------------- localized edits


def test_localized_edit_leaves_pixels_outside_the_region_unchanged(model, face):
    m, directions = model
    before, after = render(m.generator, torch.cat([face, apply_edits(face, directions, {"smile": 3.0})]))
    landmarks = analyze([before], identity=False)[0].landmarks
    mask = region_mask(landmarks, before.shape[0], "mouth")
    local = blend(before, after, mask)
    outside = mask == 0
    assert outside.mean() > 0.5 and np.array_equal(local[outside], before[outside])
    assert psnr_outside(before, local, mask) == float("inf") > psnr_outside(before, after, mask)
    inside = mask > 0.9
    assert np.abs(local[inside].astype(int) - before[inside].astype(int)).mean() > 0  # the mouth did change
    assert set(REGIONS) >= {"eyes", "brows", "mouth", "hair"}
    hair = region_mask(landmarks, before.shape[0], "hair")
    assert hair[0, 0] == 1 and hair[32, 32] == 0  # the corner is background, the centre is face
    with pytest.raises(UserError, match="unknown region"):
        region_mask(landmarks, 64, "ears")


# --------------------------------------------------------------------------- augmentation


def test_augmentation_zip_has_n_images_and_n_label_rows(model, face, tmp_path):
    m, directions = model
    variants, base = make_variants(m.generator, face, directions, 5, seed=1)
    path = write_zip(tmp_path / "set.zip", variants, base, render(m.generator, face)[0], m.name)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
        first = Image.open(io.BytesIO(archive.read("variant_0000.png")))
        first.load()
    assert sorted(n for n in names if n.startswith("variant_")) == [f"variant_{i:04d}.png" for i in range(5)]
    assert len(rows) == 5 and [r["file"] for r in rows] == [f"variant_{i:04d}.png" for i in range(5)]
    assert {"age_strength", "age_expected", "age_measured", "happy_measured"} <= rows[0].keys()
    assert float(rows[0]["age_strength"]) == variants[0].strengths["age"]
    assert "AI-edited" in first.text["Description"]
    agreement = label_agreement(variants, base)
    assert 0 <= agreement["all"] <= 1


# --------------------------------------------------------------------------- showcase


def test_showcase_gif_has_the_frames_and_says_it_is_ai_edited(model, face, tmp_path):
    m, directions = model
    frames = sweep_frames(m.generator, face, directions, ["age"], (-2, 2), frames=8, size=64)
    assert frames.shape == (8, 64, 64, 3)
    assert not np.array_equal(frames[0], frames[4])  # -2 and +2 differ; the loop comes back
    path = write_gif(frames, tmp_path / "sweep.gif", fps=8, model=m.name)
    with Image.open(path) as gif:
        assert gif.n_frames == 8
    assert "AI-edited" in provenance.read(path)["description"]
    sheet = contact_sheet(m.generator, face, directions, ["age", "smile"], (-1, 0, 1), size=48)
    assert sheet.shape[0] > 2 * 48 and sheet.shape[1] > 3 * 48


# --------------------------------------------------------------------------- the command line


def run(argv: list[str], capsys) -> tuple[int, dict, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]) if out.strip() else {}, err


def test_cli_mix_transfer_target_region_showcase_augment(tmp_path, capsys):
    code, mixed, _ = run(["mix", "seed:1", "seed:2", "--layers", "coarse", "--out", str(tmp_path / "mix.png"),
                          "--latent-out", str(tmp_path / "mix.safetensors")], capsys)  # fmt: skip
    assert code == 0 and set(mixed["identity_distance"]) == {"a", "b"} and (tmp_path / "mix.png").is_file()
    code, moved, _ = run(["transfer", "seed:1", "seed:4", "--out", str(tmp_path / "tr.png")], capsys)
    assert code == 0 and set(moved["emotion"]) == {"a", "b", "result"} and moved["identity_distance_to_a"] >= 0
    latent = str(tmp_path / "mix.safetensors")
    code, target, err = run(["edit", latent, "--target", "age=95", "--identity-limit", "0.01",
                             "--out", str(tmp_path / "old.png")], capsys)  # fmt: skip
    assert code == 2 and "without losing identity" in err and not target["targets"][0]["reached"]
    code, local, _ = run(["edit", latent, "--set", "smile=+3", "--region", "mouth", "--out", str(tmp_path / "r.png")], capsys)
    assert code == 0 and local["region"] == "mouth"
    code, shown, _ = run(["showcase", "seed:3", "--frames", "6", "--sheet", "age", "--out", str(tmp_path / "show")], capsys)
    assert code == 0 and {Path(shown[k]).name for k in ("gif", "mp4", "before_after", "sheet")} == {
        "sweep.gif", "sweep.mp4", "before_after.png", "sheet.png"}  # fmt: skip
    assert Path(shown["mp4"]).read_bytes()[4:8] == b"ftyp"
    code, augmented, _ = run(["augment", "seed:3", "--n", "3", "--out", str(tmp_path / "aug.zip")], capsys)
    assert code == 0 and augmented["variants"] == 3 and augmented["images_per_second"] > 0
    assert cli.main(["mix", "seed:1", "seed:x", "--out", str(tmp_path / "x.png")]) == 2


def test_cli_batch_reports_the_bad_file_goes_on_and_resumes(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(FACES / "astronaut.png", photos / "astronaut.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (200, 200), (90, 120, 200)).save(photos / "sky.png")  # no face in it
    out = tmp_path / "out"
    code, result, _ = run(["batch", str(photos), "--edit", "age=+2", "--out", str(out)], capsys)
    assert code == 0 and result["counts"] == {"ok": 1, "failed": 2}
    with (out / "report.csv").open() as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["astronaut.png"]["status"] == "ok" and (out / "astronaut.png").is_file()
    assert rows["broken.jpg"]["status"] == "failed" and "corrupt" in rows["broken.jpg"]["reason"]
    assert rows["sky.png"]["status"] == "failed" and "no face" in rows["sky.png"]["reason"]
    edited = np.asarray(Image.open(out / "astronaut.png"))
    assert edited.shape == np.asarray(Image.open(FACES / "astronaut.png").convert("RGB")).shape
    # A second run does not redo the finished photo.
    code, again, _ = run(["batch", str(photos), "--set", "age=+2", "--out", str(out)], capsys)
    assert code == 0 and again["counts"] == {"done before": 1, "failed": 2}
    assert cli.main(["batch", str(photos), "--out", str(out)]) == 2  # no edit given
