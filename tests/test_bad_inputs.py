"""The bad-input corpus (``tests/bad_inputs.py``) through the package API, the command line and the
app's API: each input refused with its reason in one line (or accepted where it is fine), nothing
crashes, nothing runs, and the app keeps serving afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from bad_inputs import MODEL, Case, cli_argv, corpus, dims_of, make, through_api, through_app, through_cli
from test_app_api import edit_inputs, launch_app, small_model

from pipeline import provenance
from pipeline import studio as studio_module
from pipeline.latent.files import save_latent
from pipeline.studio import Studio

CASES = corpus()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def studio(model_folder):
    """The studio (and the CLI, in this process) on the test model folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(studio_module.OVERRIDE_ENV, str(model_folder))
        studio_module.load_model.cache_clear()
        yield Studio()
        studio_module.load_model.cache_clear()


@pytest.fixture(scope="module")
def made(tmp_path_factory, studio) -> dict:
    """Every case's input, and a good latent file for the steps that need a face."""
    folder = tmp_path_factory.mktemp("corpus")
    model = studio.model
    inputs = {case.id: make(case, folder, dims_of(model.generator)) for case in CASES}
    inputs["good-latent"] = save_latent(folder / "face.safetensors", studio.random_latent(model, 3))
    return inputs


def check(case: Case, outcome) -> None:
    assert outcome.matches(case), f"{case.id}: expected {case.reason or 'acceptance'}, got {outcome}"


def canary(made: dict) -> Path:
    """The file the shell prompt would create if any part of it ran in a shell."""
    return Path(made["image-empty"]).parent.parent / "prompt-shell" / "canary"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_package_api(case, studio, made):
    session = studio.new_session()
    try:
        outcome = through_api(case, made[case.id], studio, session)
        check(case, outcome)
        if case.kind == "image" and outcome.accepted:
            # Downloads stay in the session's own folder, whatever the upload was called.
            assert [p.parent for p in session.folder.iterdir()] == [session.folder]
    finally:
        session.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_command_line(case, studio, made, tmp_path):
    check(case, through_cli(case, made[case.id], tmp_path / "out", made["good-latent"]))


@pytest.mark.parametrize("case_id", ["image-bomb", "audio-not-audio", "prompt-10000-chars", "latent-pickle"])
def test_command_line_in_a_fresh_process(case_id, model_folder, made, tmp_path):
    """As a user runs it: exit status 2, one line on stderr (no warnings, no traceback)."""
    case = next(c for c in CASES if c.id == case_id)
    argv = cli_argv(case, made[case_id], tmp_path, made["good-latent"])
    env = {**os.environ, studio_module.OVERRIDE_ENV: str(model_folder)}
    res = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert re.search(case.reason, res.stderr, re.IGNORECASE), res.stderr


def test_shell_metacharacters_are_spoken_not_run(studio, made, tmp_path):
    prompt = made["prompt-shell"]
    assert through_cli(Case("prompt", "shell", lambda f, d: prompt, None), prompt, tmp_path, made["good-latent"]).accepted
    assert not canary(made).exists()


@pytest.fixture(scope="module")
def app(model_folder, tmp_path_factory):
    yield from launch_app(model_folder, tmp_path_factory.mktemp("log"))


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app, verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_app_api(case, client, made):
    check(case, through_app(case, made[case.id], client))


@pytest.mark.slow
def test_app_keeps_serving_after_the_corpus(client, made):
    from gradio_client import handle_file

    client.predict(handle_file(str(made["image-name-shell"])), api_name="/upload")
    client.predict(api_name="/encode")
    _, after, scores, _, edited_file, *_ = client.predict(*edit_inputs({"pc0": 2.0}), api_name="/edit")
    assert "identity_distance" in scores
    for shown_or_downloaded in (after, edited_file):  # both say what made them
        assert f"model {MODEL}" in provenance.read(shown_or_downloaded)["description"]
    assert not canary(made).exists()


def raw_call(url: str, api_name: str, data: list) -> str:
    """One call of the app's HTTP API without gradio_client (which would upload local files itself)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        event = http.post(f"gradio_api/call/{api_name}", json={"data": data}).json()["event_id"]
        return http.get(f"gradio_api/call/{api_name}/{event}").text


def file_endpoints(client, path: str) -> dict[str, list]:
    """Every API endpoint that takes a file, with a request naming ``path`` in each file input."""
    named = {"path": path, "meta": {"_type": "gradio.FileData"}}
    endpoints = {}
    for name, info in client.view_api(print_info=False, return_format="dict")["named_endpoints"].items():
        data, takes_file = [], False
        for param in info["parameters"]:
            kind = str(param["python_type"]["type"])
            if "filepath" in kind:
                takes_file = True
                data.append([named] if kind.startswith("list") else named)
            else:
                data.append(param.get("parameter_default") if param.get("parameter_has_default") else None)
        if takes_file:
            endpoints[name.lstrip("/")] = data
    return endpoints


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/etc/passwd", "../../../../etc/passwd", str(ROOT / "weights" / MODEL / "generator.safetensors")])
def test_no_request_can_name_a_server_file(app, client, path):
    """Every file input takes uploads only: a path the server did not receive is refused, whatever the endpoint."""
    endpoints = file_endpoints(client, path)
    assert {"upload", "start_from_file_encode", "talk", "mix"} <= endpoints.keys()
    for api_name, data in endpoints.items():
        reply = raw_call(app, api_name, data)
        assert "event: error" in reply and "not uploaded by a user" in reply, (api_name, reply[:300])
        assert "root:" not in reply  # nothing of the file comes back


@pytest.mark.slow
def test_the_page_asks_for_consent_and_no_impersonation(app):
    page = httpx.get(f"{app}config", timeout=60).text
    assert "agreed" in page and "impersonate" in page and "tagged as AI-edited" in page
