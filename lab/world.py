"""The procedural world the default model is trained on and evaluated in.

A scene is one object of a named colour and shape moving in a named way over a static background. Scenes are
rendered on the fly in torch, batched, on whatever device the caller uses (the GPU when training), so data is
never the bottleneck and no data set has to be stored or downloaded.

Why the world looks the way it does:
- Backgrounds are achromatic (grey flats, grey gradients, grey textures cropped from the real photographs that
  scikit-image ships) and objects are saturated colours. Colour, shape and motion can then be read back from any
  clip by a simple, transparent oracle (``oracle.py``), which makes prompt following measurable.
- A fixed set of (colour, shape, motion) combinations is held out of training; generating those and reading them
  back measures compositional generalisation rather than memorisation.
- Every background carries a *surface*: an achromatic random field (mottled light, like film grain at the
  scale of the latent grid) that changes smoothly from one latent frame to the next. It is not in the caption: it
  is what the initial noise decides. Without it a clip is almost fully determined by its caption, the sampler
  maps most of the initial noise onto the same few pictures, and nothing keyed into that noise (the watermark)
  can be read back from pixels; real footage has this entropy by nature (docs/watermark.md, "The surface").
- ``render_photo_pans`` adds colour camera pans over real photographs; only the VAE sees those, so that it also
  reconstructs natural footage reasonably (the verifier encodes arbitrary uploads with it).
"""

from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# Saturated colours, far apart in hue, none of them grey, so that an achromatic background never looks like one.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 35),
    "orange": (250, 135, 10),
    "yellow": (240, 225, 25),
    "green": (35, 185, 50),
    "cyan": (25, 205, 225),
    "blue": (35, 60, 235),
    "purple": (135, 45, 210),
    "pink": (245, 70, 185),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "bouncing", "growing")
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "texture")

# The surface field: one independent grid per latent frame (the VAE folds 4 frames into one), a quarter of the
# frame's resolution in space (finer than the 8-pixel latent cells, which carry it in their 16 channels), and
# this standard deviation on the [0, 1] scale (about 13 grey levels).
SURFACE_STD = 0.05
SURFACE_CELL = 4
SURFACE_FRAME_STRIDE = 4

DEFAULT_FRAMES = 17
DEFAULT_SIZE = 128
DEFAULT_FPS = 8

# Grey photographs (or colour ones made grey) that scikit-image ships in its wheel; no download involved.
TEXTURE_IMAGES: tuple[str, ...] = (
    "brick", "grass", "gravel", "camera", "moon", "coins", "page", "text",
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
)
PHOTO_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


@dataclass(frozen=True)
class SceneSpec:
    """What a clip shows; the caption is generated from it and the oracle reads it back."""

    colour: str
    shape: str
    motion: str
    background: str

    @property
    def combo(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)


def all_combos() -> list[tuple[str, str, str]]:
    return list(itertools.product(COLOURS, SHAPES, MOTIONS))


@lru_cache(maxsize=1)
def heldout_combos() -> frozenset[tuple[str, str, str]]:
    """24 of the 240 (colour, shape, motion) triples, never shown in training.

    Chosen by a fixed seed such that every colour, shape and motion appears among them and every *pair* of
    attributes still appears in training through some other triple: the model must compose, not invent.
    """
    combos = all_combos()
    rng = random.Random(20261124)
    while True:
        picked = set(rng.sample(combos, 24))
        train = [c for c in combos if c not in picked]
        pairs = {(c[i], c[j], i, j) for c in train for i, j in ((0, 1), (0, 2), (1, 2))}
        complete = all((c[i], c[j], i, j) in pairs for c in picked for i, j in ((0, 1), (0, 2), (1, 2)))
        covers = all({c[k] for c in picked} == set(names) for k, names in enumerate((COLOURS, SHAPES, MOTIONS)))
        if complete and covers:
            return frozenset(picked)


def train_combos() -> list[tuple[str, str, str]]:
    held = heldout_combos()
    return [c for c in all_combos() if c not in held]


# ---------------------------------------------------------------------------------------------------- captions

_SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
                "star": ("star",), "cross": ("cross", "plus")}
_MOTION_PHRASES = {
    "left": ("moving left", "moves left", "moving to the left", "sliding left", "going left"),
    "right": ("moving right", "moves right", "moving to the right", "sliding right", "going right"),
    "up": ("moving up", "moves up", "rising", "going up", "sliding up"),
    "down": ("moving down", "moves down", "falling", "going down", "sliding down"),
    "bouncing": ("bouncing", "bounces", "bouncing up and down", "hopping"),
    "growing": ("growing", "grows", "getting bigger", "expanding"),
}
_BACKGROUND_PHRASES = {
    "flat": ("on a plain background", "on a flat background", "on a plain grey background"),
    "gradient": ("on a gradient background", "on a grey gradient"),
    "texture": ("on a textured background", "on a texture", "over a grey photo texture"),
}
_ARTICLES = ("a", "the", "one", "")


def caption(spec: SceneSpec, rng: random.Random, background_p: float = 0.5) -> str:
    """A caption from the grammar: varied wording, canonical attribute words always present."""
    words = [rng.choice(_ARTICLES), spec.colour, rng.choice(_SHAPE_WORDS[spec.shape]),
             rng.choice(_MOTION_PHRASES[spec.motion])]
    if rng.random() < background_p:
        words.append(rng.choice(_BACKGROUND_PHRASES[spec.background]))
    return " ".join(w for w in words if w)


def canonical_prompt(spec: SceneSpec) -> str:
    """The plain prompt used for evaluation: 'a red circle moving left'."""
    return f"a {spec.colour} {spec.shape} {_MOTION_PHRASES[spec.motion][0]}"


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted; the tokenizer's vocabulary is built from it."""
    words: set[str] = set(COLOURS) | set(_ARTICLES[:-1])
    for group in (_SHAPE_WORDS, _MOTION_PHRASES, _BACKGROUND_PHRASES):
        for phrases in group.values():
            for phrase in phrases:
                words.update(phrase.split())
    return sorted(words)


def sample_specs(n: int, rng: random.Random, combos: list[tuple[str, str, str]] | None = None) -> list[SceneSpec]:
    combos = combos if combos is not None else train_combos()
    out = []
    for _ in range(n):
        colour, shape, motion = rng.choice(combos)
        out.append(SceneSpec(colour, shape, motion, rng.choice(BACKGROUNDS)))
    return out


# ---------------------------------------------------------------------------------------------------- textures

@lru_cache(maxsize=4)
def _load_images(names: tuple[str, ...], grey: bool) -> tuple[np.ndarray, ...]:
    cache = os.environ.get("FRAMEMARK_TEXTURE_CACHE")
    if cache and os.path.exists(cache):
        with np.load(cache) as z:
            return tuple(z[f"{'g' if grey else 'c'}_{n}"] for n in names)
    import skimage.color
    import skimage.data

    images = []
    for name in names:
        im = getattr(skimage.data, name)()
        if im.dtype == bool:
            im = im.astype(np.uint8) * 255
        if grey:
            if im.ndim == 3:
                im = (skimage.color.rgb2gray(im[..., :3]) * 255).astype(np.uint8)
        else:
            im = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im[..., :3]
        images.append(np.ascontiguousarray(im))
    return tuple(images)


def export_texture_cache(path: str) -> None:
    """Write the photographs to one .npz, for machines where scikit-image is not installed."""
    arrays = {f"g_{n}": im for n, im in zip(TEXTURE_IMAGES, _load_images(TEXTURE_IMAGES, True))}
    arrays.update({f"c_{n}": im for n, im in zip(PHOTO_IMAGES, _load_images(PHOTO_IMAGES, False))})
    np.savez_compressed(path, **arrays)


_DEVICE_IMAGES: dict[tuple[tuple[str, ...], bool, str], list[torch.Tensor]] = {}


def _images_on(names: tuple[str, ...], grey: bool, device: torch.device) -> list[torch.Tensor]:
    """The photographs as (1,C,H,W) float tensors on ``device``, made once per process (training renders
    thousands of batches; copying from host memory each time would dominate)."""
    key = (names, grey, str(device))
    if key not in _DEVICE_IMAGES:
        tensors = []
        for im in _load_images(names, grey):
            t = torch.from_numpy(im).to(device=device, dtype=torch.float32) / 255.0
            tensors.append(t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None].contiguous())
        _DEVICE_IMAGES[key] = tensors
    return _DEVICE_IMAGES[key]


def _random_crops(images: list[torch.Tensor], n: int, out_hw: tuple[int, int], frames: int,
                  gen: torch.Generator, device: torch.device, pan: bool,
                  scale_range: tuple[float, float] = (0.25, 0.85)) -> torch.Tensor:
    """(n, C, frames, H, W) crops in [0,1]; with ``pan`` the crop window moves and zooms over time.

    ``scale_range`` is the crop's side as a fraction of the photograph's short side.
    """
    h, w = out_hw
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        ih, iw = img.shape[-2:]
        r = torch.rand(8, generator=gen).tolist()
        # crop size as a fraction of the image, then a centre that keeps the crop inside
        scale = scale_range[0] + (scale_range[1] - scale_range[0]) * r[0]
        ch, cw = scale * min(ih, iw) * h / max(h, w), scale * min(ih, iw) * w / max(h, w)
        t = torch.linspace(0, 1, frames, device=device)
        if pan:
            zoom = 1.0 + (r[1] - 0.5) * 0.4 * t
            dx, dy = (r[2] - 0.5) * 0.3 * t, (r[3] - 0.5) * 0.3 * t
        else:
            zoom, dx, dy = torch.ones_like(t), torch.zeros_like(t), torch.zeros_like(t)
        cx0 = (cw / iw) + (1 - 2 * cw / iw) * r[4]
        cy0 = (ch / ih) + (1 - 2 * ch / ih) * r[5]
        sx, sy = (cw / iw) / zoom, (ch / ih) / zoom  # half extents in [-1,1] units
        cx = (2 * cx0 - 1 + dx).clamp(-1 + sx, 1 - sx)
        cy = (2 * cy0 - 1 + dy).clamp(-1 + sy, 1 - sy)
        flip = -1.0 if r[6] < 0.5 else 1.0
        theta = torch.zeros(frames, 2, 3, device=device)
        theta[:, 0, 0] = sx * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta, (frames, img.shape[1], h, w), align_corners=False)
        crop = F.grid_sample(img.expand(frames, -1, -1, -1), grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)
        out.append(crop.permute(1, 0, 2, 3))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------------- rendering

def _shape_distance(shape_ids: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (in object radii, negative inside) to each clip's shape; u, v: (B,T,H,W), y pointing down."""
    r = torch.sqrt(u * u + v * v)
    au, av = u.abs(), v.abs()
    circle = r - 1.0
    square = torch.maximum(au, av) - 0.88
    # equilateral triangle pointing up, inradius 0.68
    triangle = torch.maximum(torch.maximum(v, 0.866 * u - 0.5 * v), -0.866 * u - 0.5 * v) - 0.68
    # five-pointed star: boundary radius linear in angle between outer and inner radius
    theta = torch.atan2(v, u) + math.pi / 2
    sector = 2 * math.pi / 5
    a = torch.remainder(theta + sector / 2, sector) - sector / 2
    star = r - (0.55 + (1.35 - 0.55) * (1 - a.abs() / (sector / 2)))
    cross = torch.minimum(torch.maximum(au - 1.05, av - 0.38), torch.maximum(au - 0.38, av - 1.05))
    stacked = torch.stack([circle, square, triangle, star, cross])  # (5,B,T,H,W)
    idx = shape_ids.view(1, -1, 1, 1, 1).expand(1, *u.shape)
    return stacked.gather(0, idx)[0]


def _trajectories(motion_ids: torch.Tensor, h: int, w: int, frames: int, gen: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre x, centre y and radius per frame, each (B,T), in pixels; the object stays inside the frame."""
    b = motion_ids.shape[0]
    t = torch.linspace(0, 1, frames, device=device).expand(b, frames)
    rnd = torch.rand(b, 6, generator=gen).to(device)
    m = motion_ids.to(device).view(b, 1)
    unit = min(h, w) / 128.0
    radius0 = (11 + 5 * rnd[:, 0:1]) * unit
    growing = m == MOTIONS.index("growing")
    radius = torch.where(growing, (7 + 3 * rnd[:, 0:1]) * unit * (1 + 1.4 * t), radius0.expand(b, frames))
    margin = radius.max(dim=1, keepdim=True).values * 1.45
    span_x, span_y = w - 2 * margin, h - 2 * margin
    travel_x = span_x * (0.55 + 0.4 * rnd[:, 1:2])
    travel_y = span_y * (0.55 + 0.4 * rnd[:, 1:2])
    free_x = margin + (span_x - travel_x) * rnd[:, 2:3]
    free_y = margin + (span_y - travel_y) * rnd[:, 2:3]
    any_x = margin + span_x * rnd[:, 3:4]
    any_y = margin + span_y * rnd[:, 4:5]
    mid_x, mid_y = margin + span_x * (0.25 + 0.5 * rnd[:, 3:4]), margin + span_y * (0.25 + 0.5 * rnd[:, 4:5])
    bounce_amp = span_y * (0.5 + 0.4 * rnd[:, 5:6])
    floor = h - margin - (span_y - bounce_amp) * rnd[:, 4:5]
    cases_x = {
        "left": free_x + travel_x * (1 - t), "right": free_x + travel_x * t,
        "up": any_x.expand(b, frames), "down": any_x.expand(b, frames),
        "bouncing": any_x.expand(b, frames), "growing": mid_x.expand(b, frames),
    }
    cases_y = {
        "left": any_y.expand(b, frames), "right": any_y.expand(b, frames),
        "up": free_y + travel_y * (1 - t), "down": free_y + travel_y * t,
        "bouncing": floor - bounce_amp * torch.sin(2 * math.pi * t).abs(), "growing": mid_y.expand(b, frames),
    }
    cx = torch.zeros(b, frames, device=device)
    cy = torch.zeros(b, frames, device=device)
    for k, name in enumerate(MOTIONS):
        sel = m == k
        cx = torch.where(sel, cases_x[name], cx)
        cy = torch.where(sel, cases_y[name], cy)
    return cx, cy, radius


def _backgrounds(kinds: list[str], h: int, w: int, frames: int, gen: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """(B,3,T,H,W) grey backgrounds in [0,1], static over time (the surface is added by ``render``)."""
    b = len(kinds)
    out = torch.empty(b, 3, frames, h, w, device=device)
    textures = _images_on(TEXTURE_IMAGES, True, device)
    ys = torch.linspace(-1, 1, h, device=device).view(h, 1)
    xs = torch.linspace(-1, 1, w, device=device).view(1, w)
    for i, kind in enumerate(kinds):
        r = torch.rand(4, generator=gen).tolist()
        if kind == "flat":
            plane = torch.full((h, w), 0.12 + 0.76 * r[0], device=device)
        elif kind == "gradient":
            lo = 0.08 + 0.4 * r[0]
            hi = lo + 0.3 + (0.9 - lo - 0.3) * r[1]
            ang = 2 * math.pi * r[2]
            proj = (xs * math.cos(ang) + ys * math.sin(ang)) / math.sqrt(2) * 0.5 + 0.5
            plane = lo + (hi - lo) * proj
        elif kind == "texture":
            # Small crops magnified to the frame: surface texture a 16x16-latent model can carry, rather than a
            # whole photograph shrunk (and aliased) into 128 pixels.
            tex = _random_crops(textures, 1, (h, w), 1, gen, device, pan=False,
                                scale_range=(0.12, 0.3))[0, 0, 0]
            contrast = 0.55 + 0.45 * r[0]
            plane = ((tex - tex.mean()) * contrast + 0.25 + 0.5 * r[1]).clamp(0, 1)
        else:
            raise ValueError(f"unknown background kind {kind!r}")
        out[i] = plane.expand(3, frames, h, w)
    return out


def _surface(b: int, h: int, w: int, frames: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B,1,T,H,W) zero-mean achromatic field: i.i.d. normal knots every SURFACE_FRAME_STRIDE frames on a grid of
    SURFACE_CELL pixels, linear in time and bicubic in space between knots, scaled to SURFACE_STD."""
    knots_t = (frames - 1 + SURFACE_FRAME_STRIDE - 1) // SURFACE_FRAME_STRIDE + 1
    gh, gw = max(1, h // SURFACE_CELL), max(1, w // SURFACE_CELL)
    knots = torch.randn(b, 1, knots_t, gh, gw, generator=gen).to(device)
    span = (knots_t - 1) * SURFACE_FRAME_STRIDE + 1  # frames the knots cover; trimmed to the clip below
    field = F.interpolate(knots, size=(span, gh, gw), mode="trilinear", align_corners=True)[:, :, :frames]
    field = F.interpolate(field.flatten(1, 2), size=(h, w), mode="bicubic", align_corners=False)
    field = field.view(b, 1, frames, h, w)
    return field * (SURFACE_STD / field.std(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6))


def render(specs: list[SceneSpec], frames: int = DEFAULT_FRAMES, height: int = DEFAULT_SIZE,
           width: int = DEFAULT_SIZE, seed: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """Render scenes to a float tensor (B,3,T,H,W) in [0,1]; same specs and seed give the same clips."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    b = len(specs)
    shape_ids = torch.tensor([SHAPES.index(s.shape) for s in specs], device=device)
    motion_ids = torch.tensor([MOTIONS.index(s.motion) for s in specs], device=device)
    colours = torch.tensor([COLOURS[s.colour] for s in specs], dtype=torch.float32, device=device) / 255.0
    colours = (colours + (torch.rand(b, 3, generator=gen).to(device) - 0.5) * 0.06).clamp(0, 1)

    background = _backgrounds([s.background for s in specs], height, width, frames, gen, device)
    background = (background + _surface(b, height, width, frames, gen, device)).clamp(0, 1)
    cx, cy, radius = _trajectories(motion_ids, height, width, frames, gen, device)
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, 1, height, 1) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, 1, width) + 0.5
    rad = radius[..., None, None]
    u = (xs - cx[..., None, None]) / rad
    v = (ys - cy[..., None, None]) / rad
    u, v = torch.broadcast_tensors(u, v)
    dist_px = _shape_distance(shape_ids, u, v) * rad
    alpha = (0.5 - dist_px).clamp(0, 1)[:, None]  # (B,1,T,H,W), one pixel of anti-aliasing
    return background * (1 - alpha) + colours.view(b, 3, 1, 1, 1) * alpha


def render_photo_pans(n: int, frames: int = DEFAULT_FRAMES, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE,
                      seed: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """Colour camera pans and zooms over real photographs, (n,3,T,H,W) in [0,1]; VAE training only."""
    gen = torch.Generator().manual_seed(seed)
    return _random_crops(_images_on(PHOTO_IMAGES, False, torch.device(device)), n, (height, width), frames, gen, torch.device(device),
                         pan=True)


def to_uint8_frames(clip: torch.Tensor) -> np.ndarray:
    """One clip (3,T,H,W) in [0,1] to uint8 frames (T,H,W,3), the layout media.write_video takes."""
    return (clip.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
