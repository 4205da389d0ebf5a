"""The Ray engine on a real local Ray cluster (loopback, 2 CPUs): batch editing of a few
photos with a broken file and a worker killed mid-run, its resume, and the distributed
labelling that directions and augment use. One cluster for the module: starting Ray is
most of the cost."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from pipeline import cli
from pipeline.create.augment import make_variants
from pipeline.create.ray_engine import run_ray_batch, score_codes, score_rows
from pipeline.faces import attributes
from pipeline.latent.directions import random_w
from pipeline.models.render import render
from pipeline.studio.models import load_model_directions, read_model
from pipeline.studio.workers import EditorLoader, GeneratorLoader, ModelSpec
from pipeline.training.directions import render_and_score

PHOTOS = Path(__file__).parent / "data" / "utkface_mini"
MODEL = "utkface-64"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(PHOTOS.glob("*.jpg"))[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.jpg").write_text("this is not a photo")
    return folder


def report(out: Path) -> list[dict]:
    with (out / "report.csv").open() as f:
        return list(csv.DictReader(f))


def test_batch_survives_a_broken_file_and_a_killed_worker_and_resumes(cluster, photos, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "killed"
    loader = EditorLoader(ModelSpec.of(MODEL, None), (("age", 1.0),))
    rows = run_ray_batch(photos, out, loader, workers=2, progress=False, fault_drill=marker)
    assert marker.is_file()  # a worker did die mid-run
    good = sorted(p.name for p in photos.iterdir() if p.name != "broken.jpg")
    table = report(out)
    assert sorted(r["file"] for r in table) == sorted([*good, "broken.jpg"])  # one row per file, none twice
    assert [r.file for r in rows] == sorted(p.name for p in photos.iterdir())
    broken = next(r for r in table if r["file"] == "broken.jpg")
    assert broken["status"] == "failed" and broken["reason"]
    ok = [r for r in table if r["status"] == "ok"]
    assert len(ok) >= len(good) - 1  # a chip may hold no face the detector finds: then it says so
    assert all(r["reason"] for r in table if r["status"] == "failed")
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == sorted(r["output"] for r in ok)  # each edited photo once, no partial files
    assert sorted(p.name for p in (out / "faces").iterdir()) == written
    # A rerun does nothing again.
    again = run_ray_batch(photos, out, loader, workers=1, progress=False)
    assert {r.file for r in again if r.status == "done before"} == {r["file"] for r in ok}


def test_cli_batch_engine_ray(cluster, photos, tmp_path, capsys):
    out = tmp_path / "cli-out"
    code = cli.main(["batch", str(photos), "--edit", "age=+1", "--engine", "ray", "--workers", "2", "-o", str(out)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["failed"].keys() >= {"broken.jpg"} and result["engine"] == "ray"
    assert sum(result["counts"].values()) == 4
    assert cli.main(["batch", str(photos), "--edit", "age=+1", "--engine", "ray", "--workers", "0", "-o", str(out)]) == 2
    assert cli.main(["batch", str(photos), "--edit", "age=+1", "--ray-address", "x:1", "-o", str(out)]) == 2
    code = cli.main(["augment", "seed:3", "--n", "3", "--engine", "ray", "--workers", "1", "-o", str(tmp_path / "a.zip")])
    augmented = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and augmented["variants"] == 3


def test_labelling_and_augment_variants_on_ray_match_the_in_process_ones(cluster):
    m = read_model(MODEL)
    directions = load_model_directions(m, None)
    G = m.generator.eval()
    wplus = torch.cat([random_w(G, s).unsqueeze(1).repeat(1, G.n_latent, 1) for s in range(6)])
    loader = GeneratorLoader(ModelSpec.of(MODEL, None))
    local = render_and_score(G, wplus, batch=4)
    remote, images = score_codes(loader, wplus, workers=2, batch=4, keep_images=True, progress=False)
    assert images.shape == render(G, wplus).shape
    for name in attributes.SCORE_NAMES:
        np.testing.assert_allclose(remote[name], local[name], atol=1e-3)

    def on_ray(codes):
        scores, images = score_codes(loader, codes, workers=2, batch=2, keep_images=True, progress=False)
        return images, score_rows(scores)

    variants, base = make_variants(G, wplus[:1], directions, 3, seed=1, renderer=on_ray)
    here, here_base = make_variants(G, wplus[:1], directions, 3, seed=1)
    assert [v.strengths for v in variants] == [v.strengths for v in here]
    assert abs(base["age"] - here_base["age"]) < 1e-2 and variants[0].image.shape == here[0].image.shape
