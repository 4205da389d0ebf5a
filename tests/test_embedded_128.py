"""The 128-px embedded model ships complete: it loads from the registry with everything the studio
uses (encoder, prior, directions, talk map), draws faces at 128 px, and edits a photo's face."""

import pytest

from pipeline.faces.attributes import analyze
from pipeline.models import registry
from pipeline.models.perceptual import perceptual_distance
from pipeline.models.render import from_uint8
from pipeline.studio import Studio

NAME = "utkface-128"


@pytest.fixture(scope="module")
def studio(one_thread):
    return Studio(NAME)


def test_the_registry_lists_it_with_every_file_in_place():
    entry = registry.get_model(NAME)
    assert entry.status == "local" and entry.resolution == 128 and entry.alignment == "utkface"
    for kind in ("encoder", "directions", "card", "talk_map", "prior"):
        assert entry.file(kind).is_file(), kind
    assert (entry.file("encoder").parent / "refiner.safetensors").is_file()


def test_its_reconstruction_looks_like_the_photo_more_than_a_random_face(studio, astronaut):
    s = astronaut
    assert s.reconstruction.shape == (128, 128, 3)
    sample = studio.random_face(studio.new_session(), seed=3)
    assert sample.shape == (128, 128, 3) and sample.std() > 20  # a face, not a flat field
    distance = perceptual_distance(calibrated=True, resize=128)
    target = from_uint8(s.target[None])
    to_reconstruction = float(distance(from_uint8(s.reconstruction[None]), target))
    to_sample = float(distance(from_uint8(sample[None]), target))
    assert to_reconstruction < 0.7 * to_sample


def test_age_and_smile_edits_do_what_they_say(studio, astronaut):
    s = astronaut
    before = analyze([studio.edit(s, {"age": 0.0}, scores=False).face], identity=False)[0]
    older = analyze([studio.edit(s, {"age": 2.0}, scores=False).face], identity=False)[0]
    smiling = analyze([studio.edit(s, {"smile": 2.0}, scores=False).face], identity=False)[0]
    assert older.age > before.age + 5
    assert smiling.smile > before.smile
    assert (older.p_female > 0.5) == (before.p_female > 0.5)  # ageing keeps the gender
