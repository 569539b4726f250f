"""A small ray-cast renderer of stylised faces with exact ground truth.

Each head is a set of ellipsoids in head coordinates (x right, y up, z towards the camera; the
head ellipsoid has y radius 1): the head, two ears, the nose and, depending on the hair style, a
hair shell and a hanging drape. The head is rotated by roll @ yaw @ pitch and projected
orthographically (weak perspective) into the image, so head pose is geometrically real. Colours
are procedural textures evaluated at the hit point (eyes, lids, brows, mouth and lips are painted
on the face surface from the motion parameters) with Lambert shading. Landmarks are the projections
of the same 3D feature points the textures use, so they are exact, not fitted.

Everything is numpy/OpenCV on the CPU and deterministic: the same scene and motion give the same
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .params import GLASSES_STYLES, HAIR_STYLES, MOTION_DIM, MOTION_NAMES, Color, Identity, clip_motion

# Dense landmark layout: names in order (image-left first within each pair at rest).
LANDMARK_NAMES: tuple[str, ...] = (
    *(f"contour_{i}" for i in range(9)),
    "left_brow_outer",
    "left_brow_mid",
    "left_brow_inner",
    "right_brow_inner",
    "right_brow_mid",
    "right_brow_outer",
    "left_eye_outer",
    "left_eye_top",
    "left_eye_inner",
    "left_eye_bottom",
    "left_iris",
    "right_eye_inner",
    "right_eye_top",
    "right_eye_outer",
    "right_eye_bottom",
    "right_iris",
    "nose_bridge",
    "nose_tip",
    "left_nostril",
    "right_nostril",
    "left_mouth",
    "upper_lip_top",
    "upper_lip_inner",
    "lower_lip_inner",
    "lower_lip_bottom",
    "right_mouth",
)
LANDMARK_LAYOUT = "synthetic35"

_LIGHT = np.array([-0.35, 0.55, 1.0], np.float32)
_LIGHT /= np.linalg.norm(_LIGHT)
_AMBIENT = 0.45
_DIFFUSE = 0.6
_RAY_START = 6.0  # rays start this far in front of the head centre (head radius is about 1)


@dataclass(frozen=True)
class Character:
    """One character placed in a scene.

    center: (x, y) of the head centre at rest, as fractions of the image width and height.
    size: head half-height at scale 1, as a fraction of the image height.
    """

    identity: Identity
    center: tuple[float, float] = (0.5, 0.45)
    size: float = 0.25


@dataclass(frozen=True)
class Scene:
    """Characters (drawn in order, later ones in front) on a vertical-gradient background."""

    characters: tuple[Character, ...]
    height: int = 256
    width: int = 256
    background_top: Color = (0.75, 0.8, 0.85)
    background_bottom: Color = (0.45, 0.5, 0.6)

    @property
    def num_characters(self) -> int:
        return len(self.characters)


@dataclass
class RenderedFrame:
    """One rendered frame and its exact ground truth, characters in scene order.

    image: (H, W, 3) uint8 RGB.
    boxes: (N, 4) float32 x1, y1, x2, y2: the head ellipsoid's silhouette (forehead top to chin,
        cheek to cheek, without hair) united with every landmark.
    five_points: (N, 5, 2) float32 left eye centre, right eye centre, nose tip, left mouth corner,
        right mouth corner (image-left first).
    landmarks: (N, 35, 2) float32 in LANDMARK_NAMES order.
    landmark_visible: (N, 35) bool, False where the point faces away from the camera.
    """

    image: np.ndarray
    boxes: np.ndarray
    five_points: np.ndarray
    landmarks: np.ndarray
    landmark_visible: np.ndarray


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) float32 head-to-camera rotation roll @ yaw @ pitch (degrees; conventions in params)."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


class _Face:
    """Geometry of one identity under one frame's motion, in head coordinates."""

    def __init__(self, identity: Identity, motion: np.ndarray):
        m = dict(zip(MOTION_NAMES, (float(v) for v in motion)))
        self.m = m
        idt = identity
        self.idt = idt
        self.rx, self.rz = idt.face_width, idt.face_depth
        self.ew = idt.eye_size
        self.eh = idt.eye_size * 0.55
        self.ey = idt.eye_height
        smile = m["smile"]
        # Lid opening per eye: 0 shut, 1 open; squint and a smile narrow it too.
        self.opening = [
            float(np.clip((1 - m[key]) * (1 - 0.35 * m["squint"]) * (1 - 0.2 * max(smile, 0.0)), 0, 1))
            for key in ("blink_left", "blink_right")
        ]
        # Nose: an ellipsoid whose front-most point is the nose tip.
        nl, ns = idt.nose_length, idt.nose_size
        self.nose_tip_y = -0.2 - 0.3 * (nl - 0.17)
        self.nose_r = np.array([0.075 * ns, 0.6 * nl + 0.04, 0.11 * ns], np.float32)
        zc = self.surface_z(0.0, self.nose_tip_y) - 0.02
        self.nose_c = np.array([0.0, self.nose_tip_y, zc], np.float32)
        # Mouth.
        self.my = -0.53 + 0.3 * (self.ey - 0.12)
        self.mw = idt.mouth_size * (
            1 + 0.22 * m["mouth_width"] - 0.35 * m["mouth_pucker"] + 0.12 * max(smile, 0)
        )
        self.lift = 0.07 * smile
        self.open_h = 0.12 * m["mouth_open"] + 0.03 * m["mouth_pucker"] * (0.3 + m["mouth_open"])
        self.lip_t = 0.045 * (1 + 0.6 * m["mouth_pucker"])
        # Brows.
        self.brow_y = self.ey + self.eh + 0.1 + 0.09 * m["brow_raise"] - 0.02 * m["squint"]

    def surface_z(self, x, y):
        q = 1.0 - (np.asarray(x) / self.rx) ** 2 - np.asarray(y) ** 2
        return self.rz * np.sqrt(np.maximum(q, 1e-6))

    def on_surface(self, x, y) -> np.ndarray:
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32)
        return np.stack([x, y, self.surface_z(x, y)], -1).astype(np.float32)

    def eye_center(self, side: int) -> tuple[float, float]:
        sgn = -1.0 if side == 0 else 1.0
        return sgn * self.idt.eye_spacing, self.ey + 0.1 * self.eh

    def iris_center(self, side: int) -> tuple[float, float]:
        ex, ey = self.eye_center(side)
        return ex + self.m["gaze_x"] * 0.55 * self.ew, ey + self.m["gaze_y"] * 0.5 * self.eh

    def lids(self, side: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ex = -self.idt.eye_spacing if side == 0 else self.idt.eye_spacing
        q = ((x - ex) / self.ew) ** 2
        w = np.clip(1 - q, 0, None)
        # A squint raises the lower lid; the open upper lid follows the vertical gaze.
        lower = self.ey - 0.6 * self.eh * w * (1 - 0.45 * self.m["squint"])
        upper_open = self.ey + self.eh * w * (1 + 0.2 * self.m["gaze_y"])
        upper = lower + (upper_open - lower) * self.opening[side]
        return upper, lower, q

    def mouth_center_y(self, u):
        return self.my + self.lift * u * u

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(5, 3) five alignment points and (35, 3) dense landmarks, head coordinates."""
        pts: list[np.ndarray] = []
        for i in range(9):
            th = np.deg2rad(-80 + 20 * i)
            pts.append(self.on_surface(0.97 * self.rx * np.sin(th), -0.97 * np.cos(th)))
        for side in (0, 1):
            xi, xo = self.brow_ends(side)
            for t in (1.0, 0.5, 0.0) if side == 0 else (0.0, 0.5, 1.0):
                pts.append(self.on_surface(xi + (xo - xi) * t, self.brow_line(t)))
        for side in (0, 1):
            ex, _ = self.eye_center(side)
            sgn = -1 if side == 0 else 1
            xs = np.array([ex + sgn * self.ew, ex, ex - sgn * self.ew, ex], np.float32)
            upper, lower, _ = self.lids(side, xs)
            ys = np.array([upper[0], upper[1], upper[2], lower[3]], np.float32)
            corners = self.on_surface(xs, ys)
            if side == 1:  # image-left first: inner, top, outer, bottom
                corners = corners[[2, 1, 0, 3]]
            pts.extend(corners)
            pts.append(self.on_surface(*self.iris_center(side)))
        pts.append(self.on_surface(0.0, self.ey))
        tip = self.nose_c + np.array([0, 0, self.nose_r[2]], np.float32)
        pts.append(tip)
        for sgn in (-1, 1):
            nx = sgn * 0.5 * self.nose_r[0]
            ny = self.nose_c[1] - 0.75 * self.nose_r[1]
            q = 1 - (nx / self.nose_r[0]) ** 2 - ((ny - self.nose_c[1]) / self.nose_r[1]) ** 2
            pts.append(np.array([nx, ny, self.nose_c[2] + self.nose_r[2] * np.sqrt(max(q, 0))], np.float32))
        yc = self.mouth_center_y(1.0)
        pts.append(self.on_surface(-self.mw, yc))
        y0 = self.mouth_center_y(0.0)
        pts.append(self.on_surface(0.0, y0 + self.open_h + self.lip_t))
        pts.append(self.on_surface(0.0, y0 + self.open_h))
        pts.append(self.on_surface(0.0, y0 - self.open_h))
        pts.append(self.on_surface(0.0, y0 - self.open_h - 1.2 * self.lip_t))
        pts.append(self.on_surface(self.mw, yc))
        dense = np.stack(pts).astype(np.float32)
        at = LANDMARK_NAMES.index
        five = np.stack(
            [
                self.on_surface(*self.eye_center(0)),
                self.on_surface(*self.eye_center(1)),
                dense[at("nose_tip")],
                dense[at("left_mouth")],
                dense[at("right_mouth")],
            ]
        ).astype(np.float32)
        return five, dense

    def brow_ends(self, side: int) -> tuple[float, float]:
        """x of the inner and outer brow ends (a furrow pulls the inner end towards the middle)."""
        sgn = -1 if side == 0 else 1
        xi = sgn * (self.idt.eye_spacing - 0.75 * self.ew - 0.03 * self.m["brow_furrow"])
        xo = sgn * (self.idt.eye_spacing + 1.1 * self.ew)
        return xi, xo

    def brow_line(self, t):
        """y of the brow centre line at parameter t (0 inner end, 1 outer end)."""
        t = np.asarray(t, np.float32)
        y = self.brow_y + 0.035 * np.sin(np.pi * np.clip(t, 0, 1)) - 0.1 * self.m["brow_furrow"] * (1 - t)
        return y + 0.03 * min(self.m["brow_raise"], 0.0) * t  # sad/angry: outer ends drop

    def texture(self, p: np.ndarray) -> np.ndarray:
        """RGB colours (P, 3) of head-surface points p (P, 3) in head coordinates."""
        idt = self.idt
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        col = np.empty((len(p), 3), np.float32)
        col[:] = idt.skin
        skin = np.asarray(idt.skin, np.float32)
        # Cheeks: a little redder, raised by a smile.
        for sgn in (-1, 1):
            d2 = ((x - sgn * 0.42) / 0.16) ** 2 + ((y + 0.25 - 0.05 * self.m["smile"]) / 0.12) ** 2
            col += (np.exp(-d2) * 0.07)[:, None] * np.array([1.0, -0.4, -0.3], np.float32)
        front = z > 0
        for side in (0, 1):
            ex, eyc = self.eye_center(side)
            # Eye socket shade.
            d2 = ((x - ex) / (1.3 * self.ew)) ** 2 + ((y - eyc - 0.02) / (1.6 * self.eh)) ** 2
            col *= (1 - 0.22 * np.exp(-d2))[:, None]
            upper, lower, q = self.lids(side, x)
            inside = front & (q < 1)
            white = inside & (y > lower) & (y < upper)
            ix, iy = self.iris_center(side)
            dist = np.sqrt((x - ix) ** 2 + (y - iy) ** 2)
            ri = 0.52 * self.eh
            col[white] = (0.95, 0.94, 0.92)
            iris = white & (dist < ri)
            col[iris] = idt.eye_color
            col[iris & (dist < 0.45 * ri)] = (0.03, 0.03, 0.04)
            col[iris & (np.abs(x - ix + 0.3 * ri) < 0.12 * ri) & (np.abs(y - iy - 0.3 * ri) < 0.12 * ri)] = (
                1.0
            )
            lash_w = 0.018 + 0.012 * (1 - self.opening[side])
            lash = front & (q < 1.15) & (y >= upper - 0.004) & (y < upper + lash_w)
            col[lash] = (0.08, 0.05, 0.05)
            low_line = front & (q < 1.0) & (y <= lower) & (y > lower - 0.01)
            col[low_line] = skin * 0.6
            # Frown line above the inner brow end.
            xi, xo = self.brow_ends(side)
            line = (
                front & (np.abs(x - 0.6 * xi) < 0.012) & (y > self.brow_y - 0.06) & (y < self.brow_y + 0.05)
            )
            col[line] *= 1 - 0.35 * self.m["brow_furrow"]
            # Brow.
            t = (x - xi) / (xo - xi)
            yb = self.brow_line(t)
            th = idt.brow_thickness * (1 - 0.5 * np.clip(t, 0, 1))
            brow = front & (t > 0) & (t < 1) & (np.abs(y - yb) < th)
            col[brow] = np.asarray(idt.hair_color, np.float32) * 0.8
        # Mouth.
        u = x / self.mw
        inu = front & (np.abs(u) < 1)
        w = np.sqrt(np.clip(1 - u * u, 0, None))
        yc = self.mouth_center_y(u)
        ho = self.open_h * w
        lt = self.lip_t * np.clip(1 - u * u, 0, None) ** 0.6
        lips = np.asarray(idt.lip_color, np.float32)
        upper_lip = inu & (y >= yc + ho) & (y < yc + ho + lt)
        lower_lip = inu & (y <= yc - ho) & (y > yc - ho - 1.2 * lt)
        col[upper_lip] = lips * 0.92
        col[lower_lip] = lips
        cavity = inu & (np.abs(y - yc) < ho)
        col[cavity] = (0.2, 0.05, 0.06)
        teeth = cavity & (y > yc + ho - 0.035) & (np.abs(u) < 0.7)
        col[teeth] = (0.93, 0.92, 0.88)
        line = inu & (np.abs(y - yc) < 0.008 + ho)
        col[line & ~cavity] = lips * 0.45
        # Hair on the head surface: forehead above the hairline and the back of the head.
        hl = idt.hairline - 0.25 * np.clip(x / self.rx, -1, 1) ** 2
        hair = (y > hl) | ((z < -0.1 * self.rz) & (y > -0.35))
        col[hair] = _hair_color(idt, p[hair])
        return np.clip(col, 0, 1)


def _hair_color(idt: Identity, p: np.ndarray) -> np.ndarray:
    base = np.asarray(idt.hair_color, np.float32)
    streak = 1 + 0.12 * np.sin(55 * p[:, 0] + 9 * p[:, 1] + 3 * p[:, 2])
    return np.clip(base[None] * streak[:, None], 0, 1)


def _hair_shapes(idt: Identity, rx: float, rz: float) -> list[tuple[np.ndarray, np.ndarray, object]]:
    """(centre, radii, keep(p) -> bool mask) of the hair ellipsoids for this style."""
    style = HAIR_STYLES[idt.hair_style]
    thick = {"crop": 0.035, "volume": 0.15, "bob": 0.11, "long": 0.11}[style]
    lift = 0.07 if style == "volume" else 0.02
    centre = np.array([0.0, lift, -0.03], np.float32)
    radii = np.array([rx + thick, 1 + thick, rz + thick], np.float32)
    hairline = idt.hairline

    def cap(p):
        hl = hairline - 0.25 * np.clip(p[:, 0] / rx, -1, 1) ** 2
        return (p[:, 1] > hl) | ((p[:, 2] < -0.1) & (p[:, 1] > -0.35))

    if style in ("bob", "long"):

        def shell(p):
            return cap(p) | ((p[:, 2] < 0.08) & (p[:, 1] > -0.75))

    else:
        shell = cap
    shapes = [(centre, radii, shell)]
    if style == "long":
        dc = np.array([0.0, -1.0, -0.45], np.float32)
        dr = np.array([rx + 0.22, 1.35, 0.45], np.float32)
        shapes.append((dc, dr, lambda p: p[:, 1] < 0.3))
    return shapes


def _intersect(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: np.ndarray, keep=None) -> np.ndarray:
    """Distance along the rays o + t d (o: (P, 3), d: (3,)) to an ellipsoid; inf where missed.

    With ``keep`` the nearest hit point passing keep(p) is used (near side first, then far side),
    so a clipped shell shows its inside through its opening.
    """
    a = d / r
    b = (o - c) / r
    aa = float(a @ a)
    ab = b @ a
    disc = ab * ab - aa * (np.einsum("ij,ij->i", b, b) - 1)
    hit = disc > 0
    sq = np.sqrt(np.maximum(disc, 0))
    t1 = (-ab - sq) / aa
    if keep is None:
        return np.where(hit, t1, np.inf)
    t2 = (-ab + sq) / aa
    k1 = hit & keep(o + t1[:, None] * d)
    k2 = hit & keep(o + t2[:, None] * d)
    return np.where(k1, t1, np.where(k2, t2, np.inf))


def _to_u8(color) -> tuple[int, int, int]:
    return tuple(int(round(255 * float(c))) for c in color)


def background(scene: Scene) -> np.ndarray:
    """(H, W, 3) uint8 RGB vertical gradient of the scene."""
    t = np.linspace(0, 1, scene.height, dtype=np.float32)[:, None, None]
    top = np.asarray(scene.background_top, np.float32)
    bottom = np.asarray(scene.background_bottom, np.float32)
    img = (1 - t) * top + t * bottom
    return np.ascontiguousarray(
        np.broadcast_to(np.round(img * 255), (scene.height, scene.width, 3)).astype(np.uint8)
    )


def _pose(scene: Scene, ch: Character, motion: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
    m = dict(zip(MOTION_NAMES, (float(v) for v in motion)))
    s0 = ch.size * scene.height
    cx = ch.center[0] * scene.width + m["tx"] * s0
    cy = ch.center[1] * scene.height + m["ty"] * s0
    return rotation_matrix(m["yaw"], m["pitch"], m["roll"]), s0 * m["scale"], cx, cy, s0


def _project(points: np.ndarray, rot: np.ndarray, s: float, cx: float, cy: float) -> np.ndarray:
    w = points @ rot.T
    return np.stack([cx + s * w[:, 0], cy - s * w[:, 1]], -1).astype(np.float32)


def _draw_body(img: np.ndarray, ch: Character, s: float, cx: float, cy: float) -> None:
    idt = ch.identity
    skin = np.asarray(idt.skin, np.float32)
    neck = np.array(
        [
            [cx - 0.3 * s, cy + 0.4 * s],
            [cx + 0.3 * s, cy + 0.4 * s],
            [cx + 0.34 * s, cy + 1.6 * s],
            [cx - 0.34 * s, cy + 1.6 * s],
        ]
    )
    shift = 4
    k = 1 << shift
    cv2.fillPoly(img, [np.round(neck * k).astype(np.int32)], _to_u8(skin * 0.78), cv2.LINE_AA, shift)
    centre = (int(round(cx * k)), int(round((cy + 2.25 * s) * k)))
    axes = (int(round(1.75 * s * k)), int(round(0.85 * s * k)))
    cv2.ellipse(img, centre, axes, 0, 0, 360, _to_u8(idt.clothes), -1, cv2.LINE_AA, shift)
    torso = np.array(
        [
            [cx - 1.75 * s, cy + 2.25 * s],
            [cx + 1.75 * s, cy + 2.25 * s],
            [cx + 1.75 * s, cy + 9 * s],
            [cx - 1.75 * s, cy + 9 * s],
        ]
    )
    cv2.fillPoly(img, [np.round(torso * k).astype(np.int32)], _to_u8(idt.clothes), cv2.LINE_AA, shift)
    collar = np.array([[cx - 0.36 * s, cy + 1.42 * s], [cx + 0.36 * s, cy + 1.42 * s], [cx, cy + 1.85 * s]])
    cv2.fillPoly(img, [np.round(collar * k).astype(np.int32)], _to_u8(skin * 0.78), cv2.LINE_AA, shift)


def _draw_glasses(img: np.ndarray, face: _Face, rot, s, cx, cy) -> None:
    style = GLASSES_STYLES[face.idt.glasses]
    if style == "none":
        return
    k = 1 << 4
    color = _to_u8(face.idt.glasses_color)
    thick = max(1, int(round(0.025 * s)))
    ang = np.linspace(0, 2 * np.pi, 33)[:-1]
    inner = []
    for side in (0, 1):
        ex, ey = face.eye_center(side)
        ax, ay = 1.45 * face.ew, 1.15 * face.ew
        if style == "round":
            xs, ys = ex + ax * np.cos(ang), ey + ay * np.sin(ang)
        else:
            c, sn = np.cos(ang), np.sin(ang)
            norm = np.maximum(np.abs(c), np.abs(sn)) + 1e-6
            xs, ys = ex + ax * c / norm**0.7, ey + ay * sn / norm**0.7
        pts = face.on_surface(xs, ys)
        pts[:, 2] += 0.07
        proj = _project(pts, rot, s, cx, cy)
        cv2.polylines(img, [np.round(proj * k).astype(np.int32)], True, color, thick, cv2.LINE_AA, 4)
        inner.append(proj[16] if side == 1 else proj[0])
    bridge = np.stack(inner)
    cv2.polylines(img, [np.round(bridge * k).astype(np.int32)], False, color, thick, cv2.LINE_AA, 4)


def _head_shapes(face: _Face) -> tuple[list, list]:
    """(name, centre, radii, keep) ellipsoids in head coordinates: (behind the body, the rest)."""
    rx, rz = face.rx, face.rz
    ear_r = np.array([0.1, 0.2, 0.09], np.float32)
    front = [
        ("head", np.zeros(3, np.float32), np.array([rx, 1.0, rz], np.float32), None),
        ("ear", np.array([-0.95 * rx, 0.0, -0.08], np.float32), ear_r, None),
        ("ear", np.array([0.95 * rx, 0.0, -0.08], np.float32), ear_r, None),
        ("nose", face.nose_c, face.nose_r, None),
    ]
    hair = _hair_shapes(face.idt, rx, rz)
    front.append(("hair", *hair[0]))
    back = [("hair", *h) for h in hair[1:]]  # a long drape hangs behind the shoulders
    return back, front


def _render_shapes(img: np.ndarray, face: _Face, shapes: list, rot, s: float, cx: float, cy: float) -> None:
    """Ray-cast ``shapes`` (nearest surface wins) and paint the shaded colours into img."""
    if not shapes:
        return
    h, w = img.shape[:2]
    boxes = []
    for _, c, r, _ in shapes:
        m = rot @ np.diag(r * r) @ rot.T
        wc = rot @ c
        px, py = cx + s * wc[0], cy - s * wc[1]
        hx, hy = s * np.sqrt(m[0, 0]) + 1, s * np.sqrt(m[1, 1]) + 1
        boxes.append(
            (
                max(0, int(px - hx)),
                max(0, int(py - hy)),
                min(w, int(np.ceil(px + hx)) + 1),
                min(h, int(np.ceil(py + hy)) + 1),
            )
        )
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    if x0 >= x1 or y0 >= y1:
        return
    d = np.array([0.0, 0.0, -1.0], np.float32) @ rot  # ray direction in head coordinates

    def rays(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        # Ray origins in head coordinates: R^T applied to the world points (X, Y, start).
        wx, wy = (xs - cx) / s, -(ys - cy) / s
        return (wx[:, None] * rot[0] + wy[:, None] * rot[1] + _RAY_START * rot[2]).astype(np.float32)

    zbuf = np.full((y1 - y0, x1 - x0), np.inf, np.float32)
    which = np.full((y1 - y0, x1 - x0), -1, np.int16)
    for k, ((_, c, r, keep), (bx0, by0, bx1, by1)) in enumerate(zip(shapes, boxes)):
        if bx0 >= bx1 or by0 >= by1:
            continue
        jj, ii = np.meshgrid(np.arange(bx0, bx1, dtype=np.float32), np.arange(by0, by1, dtype=np.float32))
        t = _intersect(rays(ii.ravel(), jj.ravel()), d, c, r, keep).reshape(jj.shape)
        zb = zbuf[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
        closer = t < zb
        zb[closer] = t[closer]
        which[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0][closer] = k
    iy, ix = np.nonzero(which >= 0)
    if len(iy) == 0:
        return
    kind = which[iy, ix]
    o = rays((iy + y0).astype(np.float32), (ix + x0).astype(np.float32))
    p = o + zbuf[iy, ix, None] * d
    idt = face.idt
    colors = np.empty((len(p), 3), np.float32)
    normals = np.empty((len(p), 3), np.float32)
    for k, (name, c, r, _) in enumerate(shapes):
        sel = kind == k
        if not sel.any():
            continue
        ps = p[sel]
        normals[sel] = (ps - c) / (r * r)
        if name == "head":
            colors[sel] = face.texture(ps)
        elif name == "hair":
            colors[sel] = _hair_color(idt, ps) * 0.92
        elif name == "nose":
            col = np.empty((len(ps), 3), np.float32)
            col[:] = idt.skin
            pn = (ps - c) / r
            nostril = (pn[:, 1] < -0.5) & (np.abs(np.abs(pn[:, 0]) - 0.5) < 0.22) & (pn[:, 2] > 0.1)
            col[nostril] = np.asarray(idt.skin, np.float32) * 0.35
            colors[sel] = col
        else:
            colors[sel] = np.asarray(idt.skin, np.float32) * 0.93
    nw = normals @ rot.T
    nw /= np.linalg.norm(nw, axis=1, keepdims=True) + 1e-9
    nw *= np.where(nw[:, 2:] < 0, -1.0, 1.0)  # the inside of a hair shell is lit like its outside
    shade = _AMBIENT + _DIFFUSE * np.clip(nw @ _LIGHT, 0, None)
    img[iy + y0, ix + x0] = np.round(np.clip(colors * shade[:, None], 0, 1) * 255).astype(np.uint8)


def _ground_truth(face: _Face, rot, s, cx, cy):
    five3, dense3 = face.points()
    five = _project(five3, rot, s, cx, cy)
    dense = _project(dense3, rot, s, cx, cy)
    normals = dense3 / (np.array([face.rx, 1.0, face.rz], np.float32) ** 2)
    visible = (normals @ rot.T)[:, 2] > 0.05
    m = rot @ np.diag(np.array([face.rx, 1.0, face.rz], np.float32) ** 2) @ rot.T
    hx, hy = s * np.sqrt(m[0, 0]), s * np.sqrt(m[1, 1])
    pts = np.concatenate([five, dense, [[cx - hx, cy - hy], [cx + hx, cy + hy]]])
    box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float32)
    return box, five, dense, visible


def render_frame(scene: Scene, motions: np.ndarray) -> RenderedFrame:
    """Render one frame.

    motions: (N, 17) float motion vectors, one per character (MOTION_NAMES order); clipped into
    MOTION_RANGES. Returns the image and its exact ground truth (see :class:`RenderedFrame`).
    """
    motions = np.asarray(motions, np.float32).reshape(-1, MOTION_DIM)
    if len(motions) != scene.num_characters:
        raise ValueError(f"need one motion per character: {len(motions)} for {scene.num_characters}")
    motions = clip_motion(motions)
    img = background(scene)
    n = scene.num_characters
    boxes = np.zeros((n, 4), np.float32)
    five = np.zeros((n, 5, 2), np.float32)
    dense = np.zeros((n, len(LANDMARK_NAMES), 2), np.float32)
    vis = np.zeros((n, len(LANDMARK_NAMES)), bool)
    for i, (ch, motion) in enumerate(zip(scene.characters, motions)):
        rot, s, cx, cy, s0 = _pose(scene, ch, motion)
        face = _Face(ch.identity, motion)
        back, front = _head_shapes(face)
        _render_shapes(img, face, back, rot, s, cx, cy)
        _draw_body(img, ch, s, cx, cy)
        _render_shapes(img, face, front, rot, s, cx, cy)
        _draw_glasses(img, face, rot, s, cx, cy)
        boxes[i], five[i], dense[i], vis[i] = _ground_truth(face, rot, s, cx, cy)
    return RenderedFrame(img, boxes, five, dense, vis)
