"""Talking-head frames at the photo's resolution: the photo's own pixels moved by the landmark track.

The VG step of ATVGnet, done on the photo instead of on a generated face:

* **Canvas.** What the video shows: the whole photo (pasted back), the photo's face cut at its
  own resolution, or, for a face with no photo, the generator's render enlarged. Its 68
  landmarks are dlib's, read at that resolution.
* **Motion.** Every frame is the canvas warped by a thin-plate spline that takes the still's
  landmarks to the frame's (lips and jaw from the speech track, the whole head for a little
  natural motion), pinned to zero on a ring around the head and at the edge of the work box,
  so hair, background and identity stay the photo's own pixels.
* **Blinks.** A lid is a sheet sliding over the eye, not the eye squeezed: before the warp, the
  canvas's eye is covered from the lid crease down to the closing lid margin with the lid's
  skin (the photo's colours above and below, interpolated), a soft lash line at the margin
  lying on the lower lid and fading out past the corners.
* **Mouth interior.** Where the lips part there is nothing in the photo to move: the opening
  is filled from the generator's mouth-open render of the same face, warped onto the opening,
  and shaded as a mouth is (upper teeth under the upper lip, a dark cavity behind), because a
  small generator blurs that depth away. ATVGnet's blend v = m·a + (1−a)·i: the attention
  ``a`` is the inner-lip polygon, soft at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .mouth import INNER_LOWER, INNER_UPPER, LEFT_EYE, RIGHT_EYE, Similarity, inner_gap, normalise

VIDEO_SIDE = 256  # a face with no photo is shown at this size (the render enlarged)
MAX_CANVAS_SIDE = 1024  # larger photos are shrunk to this before they are animated (20 s of video: 1.6 GB of frames)
RING_SCALE = 1.35  # the pinned ring: the face's hull (brows raised) grown by this about its centre
BOX_MARGIN = 0.6  # IOD beyond the ring: the work box, pinned at its edge
GRID_STEP = 0.08  # IOD: the spline is evaluated on a grid this fine, then interpolated
DETAIL_MARGIN = 0.3  # IOD around the mouth where the spline is evaluated on the fine grid
DETAIL_STEP = 2.0  # px: the mouth's fine grid
DETAIL_FADE = 0.15  # IOD: ... fading into the coarse field towards that box's edge
SMOOTHING = 1e-3  # spline regularisation (IOD^2): coincident points with different motions stay finite
FOREHEAD_LIFT = 0.6  # IOD: brows raised by this for the ring, so it encloses the forehead

# Blinks: the upper lid comes down to the lower one, which rises a little.
UPPER_LID = {37: 41, 38: 40, 43: 47, 44: 46}  # upper lid point -> the lower lid point under it
LOWER_LID_RISE = 0.05  # share of the gap the lower lid closes
BROWS = (np.arange(17, 22), np.arange(22, 27))  # over LEFT_EYE, RIGHT_EYE (corner, upper lid, corner, lower lid)
LID_CREASE = 0.4  # the closed lid's top: this share of the way from the lid margin to the brow
LID_MIN_HEIGHT = 0.1  # IOD: ... at least this far above the margin (a brow read low)
LID_PAST_CORNER = 0.14  # IOD: the lid covers this far beyond each eye corner (the corners' lashes)
LID_BELOW = 0.06  # IOD: ... and this far under the lower lid margin, when shut
LID_SKIN_BAND = 0.02  # IOD: the skin colour is the mean of this band just outside the covered part
LID_TOP_FEATHER = 0.06  # IOD: the cover fades into the photo over this, at the crease
LID_BOTTOM_FEATHER = 0.025  # IOD: ... and at the lower lid
LID_END_FEATHER = 0.06  # IOD: ... and at its ends beyond the corners
LID_TURN = 0.1  # the lid darkens by this share towards its margin, where it turns under
LASH_SHADE = 1.0  # opacity of the lash line at the margin
LASH_ABOVE = 0.015  # IOD: the lash line's Gaussian width above the margin
LASH_BELOW = 0.04  # IOD: ... and below it, where the lashes lie on the lower lid
LASH_PAST_CORNER = 0.14  # IOD: the lash line reaches this far beyond the corners, thinning
LASH_TAPER = 0.3  # exponent of its sine profile along the eye (small: full width nearly to the corners)
LASH_COLOUR = np.array([45.0, 30.0, 25.0])  # dark brown, scaled to the lower lid's lighting

# Head motion: a slow, small sway about the neck, from a few sinusoids.
HEAD_DEGREES = 2.0  # peak roll
HEAD_SHIFT = 0.03  # IOD, peak translation
HEAD_FREQUENCIES = (0.23, 0.37, 0.61)  # Hz

# The mouth interior, in the opening's own coordinates (u across, -1..1; v from upper to lower lip, 0..1).
# Drawn as a real open mouth reads at video size: a band of upper teeth under the lip, a dark warm
# cavity (the lips' own colour in shadow, never black), the tongue's back rising from the floor.
TEETH_HEIGHT = 0.075  # IOD: visible upper teeth when the mouth is open enough
TEETH_SHARE = 0.36  # ... at most this share of the opening
TEETH_FROM = 0.02  # IOD of opening before the teeth show
LOWER_TEETH_FROM = 0.12  # IOD of opening before lower teeth show
TEETH_WIDTH = 0.78  # share of the opening's width the teeth span
TEETH_COLOUR = np.array([226.0, 218.0, 200.0])  # a warm off-white, scaled to the face's lighting
MOUTH_RED = np.array([175.0, 72.0, 70.0])  # the inside of a mouth in full light: pale lips tint it, never grey it
CAVITY_LINING = 0.5  # brightness just inside the lips, relative to the mouth's red
CAVITY_DEPTH = 0.14  # ... at the cavity's deepest
TONGUE_FROM = 0.1  # IOD of opening before the tongue shows
TONGUE_HEIGHT = 0.42  # share of the opening the tongue fills from below, fully open
TONGUE_SHADE = 0.75  # tongue brightness relative to the mouth's red at its front
GENERATOR_TEXTURE = 0.3  # how much of the generator's own interior modulates the drawn one
EDGE_FEATHER = 0.012  # IOD: soft edge of the opening


@dataclass
class Canvas:
    """The image the video animates and where its face is."""

    image: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (68, 2) in canvas pixels
    render_to_canvas: np.ndarray  # (3, 3) generator render pixel -> canvas pixel

    @property
    def frame(self) -> Similarity:
        return normalise(self.landmarks)[1]

    @property
    def iod(self) -> float:
        return self.frame.scale


def _scale_matrix(factor: float) -> np.ndarray:
    """Pixel-centre scaling (pixel i of the small image covers pixel (i + 0.5) * factor - 0.5)."""
    return np.array([[factor, 0, 0.5 * factor - 0.5], [0, factor, 0.5 * factor - 0.5], [0, 0, 1]])


def make_canvas(still: np.ndarray, still_landmarks: np.ndarray, photo=None, aligned=None, paste: bool = True) -> Canvas:
    """The canvas for a still render (``still``, the generator's face, with its dlib landmarks), optionally from its photo.

    ``photo``, ``aligned``: the photo the face was aligned from (:class:`pipeline.faces.align.AlignedFace`);
    ``paste``: the whole photo (True) or only its face at the photo's resolution (False).
    """
    from ..faces.align import apply, resize_matrix
    from ..faces.photo_render import face_size_in_photo, face_view
    size = still.shape[0]
    if photo is None or aligned is None:
        factor = VIDEO_SIDE / size
        image = np.asarray(cv2.resize(still, (VIDEO_SIDE, VIDEO_SIDE), interpolation=cv2.INTER_CUBIC))
        matrix = _scale_matrix(factor)
        return Canvas(image, apply(matrix, still_landmarks), matrix)
    to_photo = aligned.matrix_for(size, size)  # render pixel -> photo pixel
    if paste:
        image, landmarks, matrix = photo, np.asarray(aligned.face.landmarks, np.float64), to_photo
        longest = max(photo.shape[:2])
        if longest > MAX_CANVAS_SIDE:  # a video of a 4000 px photo would be slow and huge
            factor = MAX_CANVAS_SIDE / longest
            h, w = (max(2, round(s * factor)) for s in photo.shape[:2])
            shrink = resize_matrix((photo.shape[1], photo.shape[0]), (w, h))
            image = np.asarray(cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA))
            landmarks, matrix = apply(shrink, landmarks), shrink @ to_photo
        return Canvas(np.ascontiguousarray(image), landmarks, matrix)
    side = face_size_in_photo(aligned)
    face_to_photo = aligned.matrix_for(side, side)
    to_face = np.linalg.inv(face_to_photo)
    landmarks = apply(to_face, np.asarray(aligned.face.landmarks, np.float64))
    return Canvas(face_view(photo, aligned), landmarks, to_face @ to_photo)


# --------------------------------------------------------------------------- the spline


def _kernel(r2: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, r2 * np.log(r2), 0.0)


def spline_field(centres: np.ndarray, values: np.ndarray, points: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """Thin-plate spline through ``values`` ((N, 2)) at ``centres`` ((N, 2)), evaluated at ``points`` ((M, 2))."""
    n = len(centres)
    d2 = ((centres[:, None] - centres[None]) ** 2).sum(-1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(d2) + smoothing * np.eye(n)
    system[:n, n] = 1
    system[:n, n + 1 :] = centres
    system[n, :n] = 1
    system[n + 1 :, :n] = centres.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = values
    coef = np.linalg.lstsq(system, rhs, rcond=None)[0]
    k = _kernel(((points[:, None] - centres[None]) ** 2).sum(-1))
    return k @ coef[:n] + coef[n] + points @ coef[n + 1 :]


def _ring(landmarks: np.ndarray, frame: Similarity, count: int = 24) -> np.ndarray:
    """Points around the head (normalised frame): where the motion fades to nothing."""
    from scipy.spatial import ConvexHull

    shape = frame.apply(landmarks)
    lifted = shape[17:27] - [0, FOREHEAD_LIFT]
    outline = np.concatenate([shape[0:17], lifted])
    hull = outline[ConvexHull(outline).vertices]
    centre = hull.mean(axis=0)
    angles = np.arctan2(hull[:, 1] - centre[1], hull[:, 0] - centre[0])
    radii = np.linalg.norm(hull - centre, axis=1) * RING_SCALE
    order = np.argsort(angles)
    wanted = np.linspace(-np.pi, np.pi, count, endpoint=False)
    r = np.interp(wanted, angles[order], radii[order], period=2 * np.pi)
    return centre + np.stack([np.cos(wanted), np.sin(wanted)], axis=1) * r[:, None]


@dataclass
class Warper:
    """Moves a canvas's pixels from the still's landmarks to a frame's, inside a box around the face."""

    canvas: Canvas
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (canvas pixels)
    ring: np.ndarray  # (R, 2) canvas pixels
    edge: np.ndarray  # (E, 2) canvas pixels on the box's edge
    grid: np.ndarray  # (gh, gw, 2) canvas pixels where the spline is evaluated
    feather: np.ndarray  # (bh, bw, 1) 1 inside the box, 0 at its edge

    @classmethod
    def for_canvas(cls, canvas: Canvas) -> Warper:
        frame = canvas.frame
        ring_n = _ring(canvas.landmarks, frame)
        ring = frame.invert(ring_n)
        iod = canvas.iod
        h, w = canvas.image.shape[:2]
        lo = np.floor(ring.min(axis=0) - BOX_MARGIN * iod).astype(int)
        hi = np.ceil(ring.max(axis=0) + BOX_MARGIN * iod).astype(int)
        x0, y0 = max(0, lo[0]), max(0, lo[1])
        x1, y1 = min(w, hi[0]), min(h, hi[1])
        step = max(2.0, GRID_STEP * iod)
        xs = np.linspace(x0, x1 - 1, max(2, int(np.ceil((x1 - x0) / step)) + 1))
        ys = np.linspace(y0, y1 - 1, max(2, int(np.ceil((y1 - y0) / step)) + 1))
        grid = np.stack(np.meshgrid(xs, ys), axis=-1)
        per_side = max(2, int(np.ceil(max(x1 - x0, y1 - y0) / (0.5 * iod))))
        t = np.linspace(0, 1, per_side, endpoint=False)
        edge = np.concatenate([
            np.stack([x0 + t * (x1 - 1 - x0), np.full_like(t, y0)], 1),
            np.stack([np.full_like(t, x1 - 1), y0 + t * (y1 - 1 - y0)], 1),
            np.stack([x1 - 1 - t * (x1 - 1 - x0), np.full_like(t, y1 - 1)], 1),
            np.stack([np.full_like(t, x0), y1 - 1 - t * (y1 - 1 - y0)], 1),
        ])  # fmt: skip
        # Pinned only where the box is inside the canvas: at the canvas's own border the image just ends.
        inside = ((edge[:, 0] > 0) | (x0 > 0)) & ((edge[:, 1] > 0) | (y0 > 0))
        inside &= ((edge[:, 0] < w - 1) | (x1 < w)) & ((edge[:, 1] < h - 1) | (y1 < h))
        bh, bw = y1 - y0, x1 - x0
        d = np.minimum.outer(np.minimum(np.arange(bh), bh - 1 - np.arange(bh)),
                             np.minimum(np.arange(bw), bw - 1 - np.arange(bw)))  # fmt: skip
        fade = max(2.0, 0.15 * iod)
        feather = np.clip(d / fade, 0, 1).astype(np.float32)[..., None]
        return cls(canvas, (x0, y0, x1, y1), ring, edge[inside], grid, feather)

    def warp(self, target: np.ndarray, ring_target: np.ndarray | None = None, image: np.ndarray | None = None) -> np.ndarray:
        """The canvas with its still landmarks moved to ``target`` ((68, 2) canvas pixels).

        ``ring_target``: where the ring goes (it moves with the head; default: stays); ``image``:
        what is moved, in the canvas's geometry (default: the canvas; a blink closes its eyes first).
        """
        source = self.canvas.landmarks
        image = self.canvas.image if image is None else image
        ring_target = self.ring if ring_target is None else ring_target
        target = _parted(target, source, self.canvas.iod)
        centres = np.concatenate([target, ring_target, self.edge])
        values = np.concatenate([source - target, self.ring - ring_target, np.zeros_like(self.edge)])
        iod = self.canvas.iod
        gh, gw = self.grid.shape[:2]
        # In IOD units, so the smoothing means the same at every photo size.
        shift = spline_field(centres / iod, values / iod, self.grid.reshape(-1, 2) / iod) * iod
        x0, y0, x1, y1 = self.box
        field = cv2.resize(shift.reshape(gh, gw, 2).astype(np.float32), (x1 - x0, y1 - y0),
                           interpolation=cv2.INTER_LINEAR)  # fmt: skip
        # Lips meeting fold the motion within a pixel or two: the coarse grid cannot hold that, so
        # around the mouth the spline is evaluated on a fine grid.
        _refine(field, self.box, target[48:68], centres, values, iod)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        moved = cv2.remap(image, xs + field[..., 0], ys + field[..., 1], cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        out = image.copy()
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(region + (moved - region) * self.feather + 0.5, 0, 255).astype(np.uint8)
        return out


def _refine(field: np.ndarray, box: tuple[int, int, int, int], points: np.ndarray, centres: np.ndarray,
            values: np.ndarray, iod: float) -> None:  # fmt: skip
    """``field`` (the work box's motion) with the spline evaluated every :data:`DETAIL_STEP` px
    around ``points``, blended into the coarse field towards that area's edge."""
    x0, y0, x1, y1 = box
    lo = np.floor(points.min(axis=0) - DETAIL_MARGIN * iod).astype(int)
    hi = np.ceil(points.max(axis=0) + DETAIL_MARGIN * iod).astype(int)
    bx0, by0 = max(lo[0], x0), max(lo[1], y0)
    bx1, by1 = min(hi[0], x1), min(hi[1], y1)
    if bx1 <= bx0 or by1 <= by0:
        return
    yy, xx = np.mgrid[by0:by1, bx0:bx1]
    gy = np.linspace(by0, by1 - 1, max(2, int(np.ceil((by1 - by0) / DETAIL_STEP))))
    gx = np.linspace(bx0, bx1 - 1, max(2, int(np.ceil((bx1 - bx0) / DETAIL_STEP))))
    pixels = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    fine = spline_field(centres / iod, values / iod, pixels / iod).reshape(len(gy), len(gx), 2) * iod
    exact = cv2.resize(fine.astype(np.float32), (bx1 - bx0, by1 - by0), interpolation=cv2.INTER_LINEAR)
    # Blended into the coarse field over the box's outer part: no seam where the detail ends.
    d = np.minimum.outer(np.minimum(yy[:, 0] - by0, by1 - 1 - yy[:, 0]), np.minimum(xx[0] - bx0, bx1 - 1 - xx[0]))
    weight = np.clip(d / (DETAIL_FADE * iod), 0, 1)[..., None].astype(np.float32)
    part = field[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
    part += (exact.astype(np.float32) - part) * weight


# --------------------------------------------------------------------------- targets


MIN_PART = 0.015  # IOD: facing inner-lip points closer than this are held apart for the spline


def _parted(target: np.ndarray, source: np.ndarray, iod: float) -> np.ndarray:
    """Closed lips put two spline centres on one spot with different motions (a fold);
    holding them a hair apart, never further than they are in the still, keeps the spline smooth,
    and the hair is the dark line where lips meet."""
    out = np.array(target, dtype=np.float64)
    for upper, lower in zip(INNER_UPPER, INNER_LOWER):
        least = min(MIN_PART * iod, source[lower, 1] - source[upper, 1])
        short = max(least - (out[lower, 1] - out[upper, 1]), 0) / 2
        out[upper, 1] -= short
        out[lower, 1] += short
    return out


def blink_landmarks(landmarks: np.ndarray, closure: float) -> np.ndarray:
    """(68, 2) landmarks with the eyes ``closure`` (0 open, 1 shut) closed."""
    out = np.array(landmarks, dtype=np.float64)
    for upper, lower in UPPER_LID.items():
        gap = landmarks[lower] - landmarks[upper]
        out[upper] = landmarks[upper] + closure * (1 - LOWER_LID_RISE) * gap
        out[lower] = landmarks[lower] - closure * LOWER_LID_RISE * gap
    return out


def head_sway(n_frames: int, seed: int = 0, fps: int = 25) -> np.ndarray:
    """(n_frames, 3) roll (degrees) and shift (x, y in IOD): a slow, small, smooth sway."""
    rng = np.random.default_rng(seed + 1)
    t = np.arange(n_frames) / fps
    out = np.zeros((n_frames, 3))
    for i, peak in enumerate((HEAD_DEGREES, HEAD_SHIFT, HEAD_SHIFT * 0.6)):
        phases = rng.uniform(0, 2 * np.pi, len(HEAD_FREQUENCIES))
        wave = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(HEAD_FREQUENCIES, phases))
        wave -= wave[0]  # the first frame is the still
        out[:, i] = peak * wave / len(HEAD_FREQUENCIES)
    return out


def sway_matrix(pose: np.ndarray, pivot: np.ndarray, iod: float) -> np.ndarray:
    """(2, 3) rigid motion of canvas pixels for one frame of :func:`head_sway`, rolling about ``pivot``."""
    angle = np.deg2rad(pose[0])
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    shift = pivot - rot @ pivot + np.asarray(pose[1:]) * iod
    return np.concatenate([rot, shift[:, None]], axis=1)


# --------------------------------------------------------------------------- the mouth interior


def _opening_curves(shape: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower inner-lip heights at ``xs`` (normalised frame)."""
    out = []
    for points in (shape[[60, *INNER_UPPER, 64]], shape[[60, *INNER_LOWER[::-1], 64]]):
        # A parabola through the five points: lips are smooth curves, not the polygon's corners.
        x0, x1 = points[0, 0], points[-1, 0]
        coef = np.polyfit(points[:, 0], points[:, 1], 2)
        out.append(np.polyval(coef, np.clip(xs, x0, x1)))
    return out[0], out[1]


@dataclass
class MouthInterior:
    """The generator's mouth-open render of the face, ready to fill any opening of the canvas."""

    render: np.ndarray  # (S, S, 3) the generator's face with its mouth open
    inner_lips: np.ndarray  # (8, 2) its inner-lip points (render pixels), 60..67
    render_to_canvas: np.ndarray
    teeth: np.ndarray  # (3,) teeth colour under the face's lighting
    red: np.ndarray  # (3,) the mouth's inside under the face's lighting: the cavity and tongue are shades of it
    still_gap: float  # the canvas's own inner-lip gap (IOD)
    lip: float = 0.0  # IOD of that gap that is lip dlib misread as opening: the drawn opening starts below it

    @classmethod
    def build(cls, canvas: Canvas, open_render: np.ndarray, open_landmarks: np.ndarray, still_gap: float,
              lip: float = 0.0) -> MouthInterior:  # fmt: skip
        """``still_gap``: how far (IOD) the still's inner lips stay apart when its mouth is at rest;
        ``lip``: how much of it is lip (a closed mouth whose inner lips dlib placed apart)."""
        from ..faces.face_geometry import skin_luminance

        light = np.clip(skin_luminance(canvas.image, canvas.landmarks) / 170.0, 0.45, 1.05)
        return cls(open_render, np.asarray(open_landmarks, np.float64)[60:68], canvas.render_to_canvas,
                   TEETH_COLOUR * light, _mouth_red(canvas, light), still_gap, lip)  # fmt: skip

    def fill(self, frame: np.ndarray, target: np.ndarray, iod: float) -> np.ndarray:
        """``frame`` with the opening between ``target``'s inner lips ((68, 2) canvas px) filled."""
        shape, to_norm = normalise(target)
        gap = float(inner_gap(shape))
        if (gap - self.still_gap) * iod < 0.75:  # not open beyond the still's own mouth: nothing new to fill
            return frame
        gap -= self.lip
        inner = target[60:68]
        h, w = frame.shape[:2]
        pad = 3
        x0, y0 = np.maximum(np.floor(inner.min(axis=0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(inner.max(axis=0)).astype(int) + pad + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            return frame
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        pixels = np.stack([xs.ravel(), ys.ravel()], axis=1)
        local = to_norm.apply(pixels)
        top, bottom = _opening_curves(shape, local[:, 0])
        top = top + self.lip  # the misread lip stays lip
        height = np.maximum(bottom - top, 1e-6)
        v = (local[:, 1] - top) / height
        half = max((shape[64, 0] - shape[60, 0]) / 2, 1e-6)
        u = (local[:, 0] - (shape[60, 0] + shape[64, 0]) / 2) / half
        edge = EDGE_FEATHER / max(gap, 1e-6)
        alpha = np.clip(np.minimum(v, 1 - v) / edge + 0.5, 0, 1) * np.clip((1 - np.abs(u)) / 0.08, 0, 1)
        colour = self._colour(pixels, target, gap, height, u, v)
        alpha = alpha.reshape(y1 - y0, x1 - x0, 1)
        out = frame.copy()
        region = out[y0:y1, x0:x1].astype(np.float64)
        out[y0:y1, x0:x1] = np.clip(region + (colour.reshape(region.shape) - region) * alpha + 0.5, 0, 255)
        return out

    def _colour(self, pixels, target, gap, height, u, v) -> np.ndarray:
        """(M, 3) interior colour: teeth, cavity and tongue drawn in the face's own lip colour and
        lighting, modulated by the generator's render warped onto the opening."""
        to_render = np.linalg.inv(self.render_to_canvas)
        # The frame's opening, in render pixels -> the render's own opening (an affine fit of the 8 inner-lip points).
        dst = np.concatenate([target[60:68], np.ones((8, 1))], axis=1) @ to_render[:2].T
        affine, _ = cv2.estimateAffine2D(dst.astype(np.float32), self.inner_lips.astype(np.float32), method=cv2.LMEDS)
        if affine is None:
            affine = np.eye(3)[:2]
        at = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1) @ to_render[:2].T
        at = at @ affine[:, :2].T + affine[:, 2]
        base = cv2.remap(self.render.astype(np.float32), at[:, 0].astype(np.float32).reshape(-1, 1),
                         at[:, 1].astype(np.float32).reshape(-1, 1), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)  # fmt: skip
        luma = base @ np.array([0.299, 0.587, 0.114])
        texture = 1 + GENERATOR_TEXTURE * (luma / max(float(luma.mean()), 1.0) - 1)
        vc = np.clip(v, 0, 1)
        # Cavity: lit just inside the lips, darkest in the middle and towards the corners' shadow.
        depth = np.sqrt(np.sin(np.pi * vc) * np.clip(1 - u**2, 0, 1))
        colour = self.red * (CAVITY_LINING + (CAVITY_DEPTH - CAVITY_LINING) * depth)[:, None]
        # Tongue: a low dome from the floor of the mouth, in shadow at its back.
        rise = TONGUE_HEIGHT * np.clip((gap - TONGUE_FROM) / TONGUE_FROM, 0, 1)
        if rise > 0:
            dome = 1 - (u / 0.8) ** 2 - ((1 - vc) / rise) ** 2
            tongue = np.clip(dome / 0.25, 0, 1) * 0.9
            shade = TONGUE_SHADE * (0.55 + 0.45 * np.clip((vc - (1 - rise)) / rise, 0, 1))
            colour = colour + (self.red * shade[:, None] - colour) * tongue[:, None]
        colour = colour * texture[:, None]
        # Upper teeth hang from the upper lip, in its shadow at the top; lower teeth show only
        # when the jaw is well open.
        teeth_h = min(TEETH_HEIGHT, TEETH_SHARE * gap) * np.clip((gap - TEETH_FROM) / TEETH_FROM, 0, 1)
        if teeth_h <= 0:
            return colour
        across = np.clip((TEETH_WIDTH - np.abs(u)) / 0.25, 0, 1)
        down = v * height / teeth_h  # 0 at the lip, 1 at the biting edge
        upper = np.clip((1 - down) / 0.25, 0, 1) * across
        lit = (1 - 0.45 * u**2) * (0.72 + 0.28 * np.clip(down / 0.35, 0, 1))
        teeth = self.teeth * lit[:, None]
        colour = colour + (teeth - colour) * upper[:, None]
        if gap > LOWER_TEETH_FROM:
            low_h = 0.35 * teeth_h * min(1.0, (gap - LOWER_TEETH_FROM) / 0.08)
            up = (1 - v) * height / max(low_h, 1e-6)
            lower = np.clip((1 - up) / 0.3, 0, 1) * across * 0.8
            colour = colour + (teeth * 0.75 - colour) * lower[:, None]
        return colour


def _mouth_red(canvas: Canvas, light: float) -> np.ndarray:
    """(3,) the inside of this face's mouth in full light: :data:`MOUTH_RED` tinted by its lips."""
    lips = lip_colour(canvas.image, canvas.landmarks)
    tint = lips / max(float(lips.mean()), 1.0)
    return MOUTH_RED * light * (0.75 + 0.25 * tint)


def lip_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(3,) median colour of the lips: between the outer and inner lip lines of (68, 2) landmarks."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[48:60] * 4).astype(np.int32)], 1, cv2.LINE_8, shift=2)
    cv2.fillPoly(mask, [np.round(landmarks[60:68] * 4).astype(np.int32)], 0, cv2.LINE_8, shift=2)
    pixels = image[mask.astype(bool)].astype(np.float64)
    return np.median(pixels, axis=0) if len(pixels) else np.array([150.0, 90.0, 90.0])


def _lid_curve(u: np.ndarray, v: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A lid margin as a parabola through its landmarks (u along the eye, v down), at ``at``."""
    return np.polyval(np.polyfit(u, v, 2), at)


def close_lids(image: np.ndarray, landmarks: np.ndarray, closure: float, iod: float) -> np.ndarray:
    """``image`` with both eyes ``closure`` (0 open .. 1 shut) closed, in its own geometry.

    In each eye's frame (u from one corner to the other, v down) the upper lid margin comes down
    to just above the lower one; from the lid crease down to the margin (and, shut, down past
    the lower lid) the photo is covered with its own skin colours from just outside the cover,
    interpolated top to bottom, darkening a little where the lid turns under; the lash line
    lies along the margin. Below a partly closed lid the eye stays as it is: the lid slides
    over it.
    """
    if closure <= 0:
        return image
    out = image.copy()
    for outline, brow in zip((LEFT_EYE, RIGHT_EYE), BROWS):
        _close_eye(out, image, landmarks, outline, brow, closure, iod)
    return out


def _close_eye(out: np.ndarray, source: np.ndarray, landmarks: np.ndarray, outline: np.ndarray,
               brow_points: np.ndarray, closure: float, iod: float) -> None:  # fmt: skip
    """One eye of :func:`close_lids`, painted into ``out`` (read from ``source``; only the eye's box
    is worked in floating point: a frame may be 1024 px)."""
    h, w = source.shape[:2]
    start, end = landmarks[outline[0]], landmarks[outline[3]]
    length = float(np.linalg.norm(end - start))
    if length < 1:
        return
    along = (end - start) / length
    down = np.array([-along[1], along[0]])
    down = down if down[1] >= 0 else -down

    def local(points: np.ndarray) -> np.ndarray:
        return np.stack([(points - start) @ along, (points - start) @ down], axis=-1)

    def to_image(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return start + np.asarray(u)[..., None] * along + np.asarray(v)[..., None] * down

    upper = local(landmarks[list(outline[:4])])
    lower = local(landmarks[[outline[3], outline[4], outline[5], outline[0]]])
    brow = local(landmarks[brow_points])
    brow = brow[np.argsort(brow[:, 0])]
    past = LID_PAST_CORNER * iod
    us = np.linspace(-past, length + past, max(8, int(length + 2 * past)))
    reach = np.sqrt(np.clip(np.sin(np.pi * (us + past) / (length + 2 * past)), 0, 1))  # 0 at the cover's ends
    on_eye = np.clip(us, 0, length)
    margin_up = _lid_curve(upper[:, 0], upper[:, 1], on_eye)
    margin_low = _lid_curve(lower[:, 0], lower[:, 1], on_eye)
    lift = np.minimum(np.interp(us, brow[:, 0], brow[:, 1]) - margin_up, -LID_MIN_HEIGHT * iod)
    top = margin_up + LID_CREASE * lift * reach
    bottom = margin_low + LID_BELOW * iod * reach

    def skin(vs: np.ndarray, outward: float) -> np.ndarray:  # (len(us), 3) mean colour of a band
        rows = []
        for k in range(4):
            q = to_image(us, vs + outward * LID_SKIN_BAND * iod * k / 3).astype(np.float32)
            rows.append(cv2.remap(source, q[None, :, 0], q[None, :, 1], cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)[0].astype(np.float32))  # fmt: skip
        size = max(3, (len(us) // 5) | 1)
        return cv2.GaussianBlur(np.mean(rows, axis=0)[None], (size, 1), 0)[0]

    top_skin, bottom_skin = skin(top, -1.0), skin(bottom, 1.0)
    corners = np.concatenate([to_image(us, top), to_image(us, bottom)])
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 2, 0)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x1, y1 = min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    uv = local(np.stack([xx, yy], axis=-1))
    u, v = uv[..., 0], uv[..., 1]
    at = lambda values: np.interp(u, us, values)  # noqa: E731
    top_v, bottom_v, up_v, low_v = at(top), at(bottom), at(margin_up), at(margin_low)
    gap = np.maximum(low_v - up_v, 0)
    margin = up_v + closure * (low_v - LOWER_LID_RISE * gap - up_v)
    share = np.clip((v - top_v) / np.maximum(bottom_v - top_v, 1e-6), 0, 1)[..., None]
    top_c = np.stack([at(top_skin[:, c]) for c in range(3)], axis=-1)
    bottom_c = np.stack([at(bottom_skin[:, c]) for c in range(3)], axis=-1)
    lid = top_c + (bottom_c - top_c) * share
    turn = np.clip((v - top_v) / np.maximum(margin - top_v, 1e-6), 0, 1)
    lid *= (1 - LID_TURN * turn**3)[..., None]
    weight = np.clip((v - top_v) / (LID_TOP_FEATHER * iod), 0, 1)
    if closure >= 1:
        weight *= np.clip((bottom_v - v) / (LID_BOTTOM_FEATHER * iod), 0, 1)
    else:  # the eye below the margin shows
        weight *= np.clip(margin - v + 0.5, 0, 1)
    ends = np.minimum(u + past, length + past - u)  # fade out at the cover's ends, no seam
    weight = (weight * np.clip(ends / (LID_END_FEATHER * iod), 0, 1))[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    region += (lid - region) * weight
    lash_past = LASH_PAST_CORNER * iod
    spread = np.clip((u + lash_past) / (length + 2 * lash_past), 0, 1)
    width = np.where(v < margin, LASH_ABOVE, LASH_BELOW) * iod  # the lashes hang down over the lower lid
    lashes = np.exp(-0.5 * ((v - margin) / np.maximum(width, 0.5)) ** 2)
    lashes *= np.sin(np.pi * spread) ** LASH_TAPER * min(closure / 0.5, 1.0)
    opacity = (LASH_SHADE * lashes)[..., None]
    colour = LASH_COLOUR * (bottom_c.mean(axis=-1, keepdims=True) / 200.0)
    region += (colour - region) * opacity
    out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

