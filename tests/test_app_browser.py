"""The app in a real browser: click an example, align, encode, edit, mix, talk; no console errors.

Needs Chromium (``/usr/bin/chromium``, or CHROMIUM) and the ``playwright`` package (its
driver only). Screenshots go to STUDIO_SCREENSHOTS (default: the test's temp folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect, sync_playwright  # noqa: E402
from test_app_api import launch_app, small_model  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
STEP_TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # Gradio keeps a closed tab's session for an hour (to allow reconnecting); its test
    # setting shortens that to a second, so that the session-end cleanup can be watched.
    env = {"GRADIO_IS_E2E_TEST": "1"}
    yield from launch_app(small_model(tmp_path_factory.mktemp("model")), tmp_path_factory.mktemp("log"), env)


def launch(p, tmp_path: Path):
    # A fresh profile per run: nothing cached from an earlier page.
    return p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS,
                                                headless=True, viewport={"width": 1400, "height": 1000})  # fmt: skip


@pytest.fixture()
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def image_loaded(page, label: str):
    """The <img> inside the image component labelled ``label``."""
    return page.locator(f"[data-testid='image']:has-text('{label}') img, .block:has(label:text-is('{label}')) img").first


def test_click_through_align_encode_edit(app, shots, tmp_path):
    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p, tmp_path)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(app)
        expect(page.get_by_role("heading", name="Face studio")).to_be_visible()
        example = page.locator(".gallery-item, [data-testid='examples'] button, table.examples td").first
        expect(example).to_be_visible()
        page.screenshot(path=str(shots / "0-start.png"), full_page=True)

        # An example fills the photo; alignment runs by itself and offers the face.
        example.click()
        expect(page.get_by_label("face 0", exact=False)).to_be_visible()
        page.get_by_role("button", name="Align", exact=True).click()
        expect(page.locator("#aligned img")).to_be_visible()
        page.screenshot(path=str(shots / "1-aligned.png"), full_page=True)

        page.get_by_role("tab", name="2 Encode").click()
        page.get_by_role("button", name="Encode", exact=True).click()
        expect(page.locator("#reconstruction img")).to_be_visible()
        expect(page.locator("#encode-scores")).to_contain_text("identity distance")
        page.screenshot(path=str(shots / "2-encoded.png"), full_page=True)

        page.get_by_role("tab", name="4 Edit").click()
        strength = page.get_by_label("number input for pc0")
        strength.fill("3")
        strength.press("Enter")
        page.get_by_role("button", name="Edit", exact=True).click()
        expect(page.locator("#after img")).to_be_visible()
        expect(page.locator("#edit-scores")).to_contain_text("age")
        page.screenshot(path=str(shots / "3-edited.png"), full_page=True)
        # Letting go of a slider edits without the button: the face first, its scores after it.
        shown = page.locator("#after img").get_attribute("src")
        track = page.get_by_label("range slider for pc1").bounding_box()
        page.mouse.click(track["x"] + 0.9 * track["width"], track["y"] + track["height"] / 2)
        expect(page.locator("#after img")).not_to_have_attribute("src", shown)
        expect(page.locator("#edit-scores")).to_contain_text("age")
        page.screenshot(path=str(shots / "3b-slider.png"), full_page=True)

        page.get_by_role("tab", name="6 Mix").click()
        page.get_by_role("button", name="Mix", exact=True).click()
        expect(page.get_by_text("Identity distance to A:")).to_be_visible()
        page.screenshot(path=str(shots / "4-mixed.png"), full_page=True)

        page.get_by_role("tab", name="5 Talk").click()
        page.get_by_label("Text to say").fill("Hello there.")
        page.get_by_label("Paste back into the photo").check()
        page.get_by_role("button", name="Make video", exact=True).click()
        expect(page.locator("video").first).to_be_visible(timeout=STEP_TIMEOUT_MS)  # a video takes seconds
        page.screenshot(path=str(shots / "5-talk.png"), full_page=True)
        browser.close()
    assert not errors, "\n".join(errors)


def test_closing_the_tab_deletes_the_session_files(app, tmp_path):
    before = set(Path(tempfile.gettempdir()).glob("studio-session-*"))
    with sync_playwright() as p:
        browser = launch(p, tmp_path)
        page = browser.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(app)
        page.locator(".gallery-item, [data-testid='examples'] button, table.examples td").first.click()
        expect(page.locator("#aligned img")).to_be_visible()
        page.get_by_role("tab", name="2 Encode").click()
        page.get_by_role("button", name="Encode", exact=True).click()
        expect(page.get_by_text("-latent-")).to_be_visible()
        mine = set(Path(tempfile.gettempdir()).glob("studio-session-*")) - before
        assert len(mine) == 1 and any(next(iter(mine)).iterdir())
        page.close()
        deadline = time.time() + 90
        while next(iter(mine)).exists() and time.time() < deadline:
            time.sleep(1)
        browser.close()
    assert not next(iter(mine)).exists(), "the session folder outlived the session"


def test_a_random_face_appears_at_the_click(app, shots, tmp_path):
    """The model's prior draws it (the test model ships the embedded prior); the seed picks it."""
    with sync_playwright() as p:
        browser = launch(p, tmp_path)
        page = browser.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(app)
        page.get_by_label("seed (-1: any)").first.fill("3")
        page.get_by_role("button", name="Or start from a random face").click()
        face = page.locator("#aligned img")
        expect(face).to_be_visible()
        first = face.get_attribute("src")
        page.get_by_label("seed (-1: any)").first.fill("4")
        page.get_by_role("button", name="Or start from a random face").click()
        expect(face).not_to_have_attribute("src", first)
        page.screenshot(path=str(shots / "0b-random.png"), full_page=True)
        browser.close()
