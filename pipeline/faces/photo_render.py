"""Edits rendered at the photo's resolution, with the photo's own detail.

The generator draws its faces at a low resolution; the photo is sharper. So the edit is
carried over as *change*, not as pixels (in the spirit of HFGI's distortion-aware editing):

1. the motion between the generator's reconstruction ``G(w)`` and its edit ``G(w')``, a
   dense optical flow (DIS) computed on the renders upsampled to a working size, on their
   edges normalised for local brightness and contrast (a recoloured face is not a moved one);
2. the photo's own pixels moved by that flow, looked up directly in the photo (one
   resampling, so a zero edit gives the photo back bit for bit);
3. the generator's change of colour and shading that the motion does not explain, at low
   frequency only, so it never brings the generator's blur, less the cheeks' mean change: the
   face keeps its own skin tone;
4. where the edit draws something new (teeth in a new smile, an opened mouth), the
   generator's own pixels, colour-corrected to the photo: there is no photo detail to keep;
5. all of it weighted by the face mask, widened to wherever the edit acts near the face and
   fading out well inside the square the generator covers: the flow and the change are scaled
   down, not two images blended (a moved and an unmoved photo averaged would show both), so
   the change reaches nothing at the square's edge and leaves no seam there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from scipy import ndimage

from .align import AlignedFace, apply, warp_affine
from .face_geometry import cheek_mask
from .paste import paste_mask

FLOW_SIZE = 256  # working size of the flow: the generator's renders are upsampled to it
FLOW_SMOOTH = 1.5  # sigma of the flow's smoothing, in generator pixels
STRUCTURE_BAND = 4.0  # generator pixels: the flow follows edges normalised over this sigma
STRUCTURE_FLOOR = 0.02  # contrast below this (0..1 range) is flat skin, not an edge to follow
UNRELIABLE = (0.5, 1.5)  # forward-backward flow mismatch (generator px) where the photo is not moved
LOW_BAND = 0.6  # generator pixels: appearance change blurred by this sigma (below: detail)
NEW_CONTENT = (0.10, 0.22)  # residual detail (0..1 range) where the generator's pixels take over
DETAIL_CLIP = 4.0  # photo detail kept under new content: this many times its median amplitude at most
COLOUR_BAND = 3.0  # generator pixels: sigma of the photo-vs-render colour correction
ACTS = (1.5 / 255, 6 / 255)  # appearance change that marks where the edit acts
MOVES = (0.15, 0.6)  # motion (flow px at FLOW_SIZE) that marks where the edit acts
COVER = (0.72, 0.93)  # the change fades between these "radii" of the square (1: its edge) ...
COVER_SHAPE = 6.0  # ... measured as a superellipse of this exponent (a rounded square, no corners)
NEAR_FACE = (0.05, 0.25)  # the edit acts beyond the face mask up to these distances (share of the square's side)
MAX_FACE = 1024  # the photo-resolution face view is capped at this size
# The photo is moved only where the motion explains the change: the share of the local change
# (over this sigma, in generator pixels) that moving the reconstruction removes. New texture
# (an age edit's creases and shading) makes the flow find small, spurious motion that bends the
# photo's features and takes the place of the change it should carry.
EXPLAINS = (0.15, 0.4)
EXPLAIN_SIGMA = 2.0
EXPLAIN_FLOOR = (2 / 255) ** 2  # squared change below which nothing needs explaining


@dataclass
class PhotoEdit:
    """The edited photo and what went into it (for views and benchmarks)."""

    photo: np.ndarray  # the whole photo, edited
    aligned: AlignedFace
    flow: np.ndarray  # (FLOW_SIZE, FLOW_SIZE, 2) motion from edit to reconstruction

    @cached_property
    def face(self) -> np.ndarray:
        """The aligned face cut from the edited photo, at the photo's resolution (cut when asked:
        video frames need only the photo)."""
        return face_view(self.photo, self.aligned)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)


def _structure(image: np.ndarray, sigma: float) -> np.ndarray:
    """Grey levels normalised by their local mean and contrast (uint8): the edges a flow can
    follow, without the brightness and colour an edit changes (an aged face's paler skin and
    whiter hair read as motion otherwise, and the photo is warped by it)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    centred = grey - ndimage.gaussian_filter(grey, sigma)
    contrast = np.sqrt(ndimage.gaussian_filter(centred * centred, sigma)) + STRUCTURE_FLOOR
    return np.clip(128 + 50 * centred / contrast, 0, 255).astype(np.uint8)


def _flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Flow f with ``source(x) ~ target(x + f(x))`` (uint8 :func:`_structure` images, same size)."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(source, target, None)


def face_side_in_photo(aligned: AlignedFace) -> float:
    """Side of the aligned square in the photo's own pixels."""
    m = aligned.matrix_for(aligned.size, aligned.size)
    return aligned.size * float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))


def face_size_in_photo(aligned: AlignedFace) -> int:
    """Side of the face view: the aligned square at the photo's own scale (one photo pixel per
    pixel), but never below the model's resolution nor above :data:`MAX_FACE`."""
    return int(np.clip(round(face_side_in_photo(aligned)), aligned.size, MAX_FACE))


def _sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, border: int = cv2.BORDER_REPLICATE,
            interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:  # fmt: skip
    return cv2.remap(image, xs.astype(np.float32), ys.astype(np.float32), interpolation, borderMode=border)


def render_on_photo(
    photo: np.ndarray, aligned: AlignedFace, reconstruction: np.ndarray, edited: np.ndarray
) -> PhotoEdit:
    """``photo`` with the change from ``reconstruction`` to ``edited`` (generator renders) applied."""
    size = FLOW_SIZE
    rec = _resize(reconstruction.astype(np.float32) / 255, size)
    edit = _resize(edited.astype(np.float32) / 255, size)
    zero = np.array_equal(reconstruction, edited)
    scale = size / reconstruction.shape[0]
    grid = np.mgrid[0:size, 0:size][::-1].astype(np.float32)  # (2, H, W): x, y
    smooth = lambda f: ndimage.gaussian_filter(f, (FLOW_SMOOTH * scale, FLOW_SMOOTH * scale, 0))  # noqa: E731
    if zero:
        flow = np.zeros((size, size, 2), np.float32)
        mismatch = np.zeros((size, size), np.float32)
    else:
        # The renders hold no motion finer than a generator pixel; where the flow there and
        # back disagree, it is appearance (new teeth, a shadow) rather than motion.
        edges_edit, edges_rec = (_structure(image, STRUCTURE_BAND * scale) for image in (edit, rec))
        flow, back = smooth(_flow(edges_edit, edges_rec)), smooth(_flow(edges_rec, edges_edit))
        back_at = cv2.remap(back, grid[0] + flow[..., 0], grid[1] + flow[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        mismatch = np.linalg.norm(flow + back_at, axis=2) / scale
    move = lambda f: cv2.remap(rec, grid[0] + f[..., 0], grid[1] + f[..., 1], cv2.INTER_LINEAR,  # noqa: E731
                               borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    rec_moved = move(flow)
    if not zero:
        local = lambda d: ndimage.gaussian_filter((d * d).sum(2), EXPLAIN_SIGMA * scale)  # noqa: E731
        explained = 1 - local(edit - rec_moved) / (local(edit - rec) + EXPLAIN_FLOOR)
        flow = flow * _smoothstep(explained, *EXPLAINS)[..., None]
        rec_moved = move(flow)
    residual = edit - rec_moved
    low = ndimage.gaussian_filter(residual, (LOW_BAND * scale, LOW_BAND * scale, 0))
    tone = skin_tone_change(low, aligned, size)
    detail = np.abs(residual - low).max(2)
    new = np.maximum(_smoothstep(ndimage.gaussian_filter(detail, scale), *NEW_CONTENT),
                     _smoothstep(ndimage.gaussian_filter(mismatch, scale), *UNRELIABLE))  # fmt: skip
    motion = np.linalg.norm(flow, axis=2)
    acts = np.maximum(_smoothstep(np.abs(low).max(2), *ACTS), _smoothstep(motion, *MOVES))
    acts = ndimage.gaussian_filter(ndimage.maximum_filter(acts, int(2 * scale) | 1), 2 * scale)

    # Photo pixels of the face's box, and where each sits in the flow's frame.
    height, width = photo.shape[:2]
    to_photo = aligned.matrix_for(size, size)
    corners = apply(
        to_photo, np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    )
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 3, (width, height))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    q = apply(np.linalg.inv(to_photo), np.stack([xs.ravel(), ys.ravel()], 1)).reshape(*xs.shape, 2).astype(np.float32)
    inside = (q[..., 0] >= -0.5) & (q[..., 0] <= size - 0.5) & (q[..., 1] >= -0.5) & (q[..., 1] <= size - 0.5)
    at = lambda img: _sample(img, q[..., 0], q[..., 1])  # noqa: E731
    face = paste_mask((height, width), aligned, (size, size))[y0:y1, x0:x1]
    side = float(np.linalg.norm(to_photo[:2, 0])) * size  # the square's side in photo pixels
    near = 1 - _smoothstep(ndimage.distance_transform_edt(face < 0.5), NEAR_FACE[0] * side, NEAR_FACE[1] * side)
    weight = (np.maximum(face, at(acts) * near) * _cover(q, size) * inside)[..., None]

    f = _sample(flow, q[..., 0], q[..., 1], cv2.BORDER_CONSTANT) * weight
    source = apply(to_photo, (q + f).reshape(-1, 2)).reshape(*xs.shape, 2)
    # Only the photo's pixels the moved face can reach are converted (a large photo is mostly elsewhere).
    reach = int(np.ceil(np.abs(source - np.stack([xs, ys], -1)).max())) + 4 if not zero else 0
    sx0, sy0 = max(x0 - reach, 0), max(y0 - reach, 0)
    near_box = photo[sy0 : min(y1 + reach, height), sx0 : min(x1 + reach, width)].astype(np.float32) / 255
    box = near_box[y0 - sy0 : y1 - sy0, x0 - sx0 : x1 - sx0]
    moved = box if zero else _sample(near_box, source[..., 0] - sx0, source[..., 1] - sy0,
                                     interpolation=cv2.INTER_LANCZOS4)  # fmt: skip
    keep_tone = tone * face[..., None]  # the face's own skin tone is kept (see skin_tone_change)
    out = moved + (at(low) - keep_tone) * weight
    # Where the generator draws new content, its own pixels, with the photo's colours.
    photo_aligned = _resize_photo_to_frame(photo, to_photo, size)
    correction = ndimage.gaussian_filter(photo_aligned - rec, (COLOUR_BAND * scale, COLOUR_BAND * scale, 0))
    new_b = at(new)[..., None] * weight
    if new_b.any():
        drawn = at(np.clip(edit + correction, 0, 1)) - keep_tone + fine_detail(moved, side / size / scale)
        out = out * (1 - new_b) + drawn * new_b

    result = photo.copy()
    changed = weight[..., 0] > 0
    region = result[y0:y1, x0:x1]
    region[changed] = np.clip(out[changed] * 255 + 0.5, 0, 255).astype(np.uint8)
    return PhotoEdit(result, aligned, flow)


def skin_tone_change(change: np.ndarray, aligned: AlignedFace, size: int) -> np.ndarray:
    """(3,) the mean colour change of the cheeks in the generator's appearance change ``change``
    (``size`` x ``size``, aligned frame), which the renderer takes out of the face.

    The generator's edits move skin tone with their attribute (age +3σ paled dark skin by up to
    17 and darkened another face by 30 of 255 levels; smile +2σ lightened a median 10): skin
    tone is the person's, and no edit asks for it. Only the face's mean shift goes: shading,
    wrinkles, lips and hair colour still change.
    """
    cheeks = cheek_mask((size, size), aligned.landmarks() * (size / aligned.size))
    return change[cheeks].mean(0) if cheeks.any() else np.zeros(3, np.float32)


def fine_detail(image: np.ndarray, pixels_per_generator_pixel: float) -> np.ndarray:
    """The photo's detail finer than a generator pixel, at most skin texture's amplitude.

    Where the generator draws new content (wrinkles, a beard's shadow), its pixels have no detail
    of their own; the photo's texture keeps the result as sharp as the photo. Clipped to
    :data:`DETAIL_CLIP` times the median amplitude so that skin pores pass but hair strands and
    edges (content that may have moved away) do not ghost onto the new skin.
    """
    sigma = max(pixels_per_generator_pixel * LOW_BAND, 0.5)
    fine = image - ndimage.gaussian_filter(image, (sigma, sigma, 0))
    limit = DETAIL_CLIP * float(np.median(np.abs(fine))) + 1e-6
    return np.clip(fine, -limit, limit)


def _cover(q: np.ndarray, size: int) -> np.ndarray:
    """1 well inside the aligned square, 0 before its edge (no seam where the generator's view ends)."""
    centre = (size - 1) / 2
    d = np.abs(np.stack([q[..., 0] - centre, q[..., 1] - centre])) / (size / 2)
    radius = (d**COVER_SHAPE).sum(0) ** (1 / COVER_SHAPE)
    return 1 - _smoothstep(radius, *COVER)


def _resize_photo_to_frame(photo: np.ndarray, to_photo: np.ndarray, size: int) -> np.ndarray:
    """The photo seen in the flow's frame (antialiased: it is only used at low frequency)."""
    return warp_affine(photo, to_photo, (size, size), "reflect").astype(np.float32) / 255


def face_view(photo: np.ndarray, aligned: AlignedFace) -> np.ndarray:
    """The aligned face cut from ``photo`` at the photo's own resolution."""
    side = face_size_in_photo(aligned)
    return warp_affine(photo, aligned.matrix_for(side, side), (side, side), "reflect")
