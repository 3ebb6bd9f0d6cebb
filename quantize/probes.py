"""The fixed image set that calibrates static graphs and measures vision fidelity.

Images are generated from a seeded RNG, so every run (and every machine) sees the same
pixels: smooth gradients, noise at several scales, geometric shapes, stripes, and a few
composed "scenes" whose statistics are closer to photographs (smooth regions, edges,
texture). Sizes and aspect ratios vary so that the bundle's own resize and crop run as
they do on user images. Callers add their own photos on top (``edge quantize --image``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SIZES = ((320, 240), (256, 256), (200, 300), (480, 270), (300, 200), (224, 224), (360, 360), (240, 320))


def probe_images(count: int = 12, seed: int = 0) -> list[Image.Image]:
    """``count`` generated RGB images, the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    makers = (_gradient, _scene, _noise, _shapes, _smooth_noise, _stripes, _scene, _shapes)
    images = []
    for i in range(count):
        w, h = _SIZES[i % len(_SIZES)]
        images.append(makers[i % len(makers)](w, h, rng))
    return images


def _gradient(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(0.2, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    r = np.hypot(xx - w * rng.uniform(), yy - h * rng.uniform()) / np.hypot(w, h)
    planes = [(a[c] * xx / w + (1 - a[c]) * yy / h) * (1 - b[c]) + b[c] * r for c in range(3)]
    return _to_image(np.stack(planes, -1))


def _noise(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    return _to_image(rng.random((h, w, 3)))


def _smooth_noise(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Noise upsampled from a coarse grid: cloud-like texture at a random scale."""
    cells = int(rng.integers(4, 16))
    coarse = _to_image(rng.random((cells, max(2, cells * w // h), 3)))
    return coarse.resize((w, h), Image.Resampling.BICUBIC)


def _stripes(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
    wave = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    colours = rng.random((2, 3))
    return _to_image(wave[..., None] * colours[0] + (1 - wave[..., None]) * colours[1])


def _shapes(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=colour)
    return img


def _scene(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Sky, hills, a sun and a house, slightly blurred with sensor-like noise."""
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32) / h
    sky_top, sky_low = rng.uniform(0.3, 0.7, 3) * [0.6, 0.8, 1.0], rng.uniform(0.7, 1.0, 3)
    sky = sky_top + (sky_low - sky_top) * yy[..., None]
    img = _to_image(sky)
    draw = ImageDraw.Draw(img)
    sun = (int(rng.integers(w // 8, w - w // 8)), int(rng.integers(h // 10, h // 3)))
    radius = int(rng.integers(h // 16, h // 8))
    draw.ellipse((sun[0] - radius, sun[1] - radius, sun[0] + radius, sun[1] + radius), fill=(255, 230, 140))
    horizon = int(h * rng.uniform(0.5, 0.7))
    xs = np.linspace(0, w, 9)
    ys = horizon + rng.normal(0, h * 0.05, xs.size)
    ground = tuple(int(c) for c in rng.integers((40, 90, 30), (110, 170, 80)))
    draw.polygon([(0, h)] + [(float(x), float(y)) for x, y in zip(xs, ys)] + [(w, h)], fill=ground)
    hx, hw = int(rng.integers(w // 8, w // 2)), int(rng.integers(w // 6, w // 3))
    top = horizon - hw // 2
    draw.rectangle((hx, top, hx + hw, horizon + hw // 4), fill=tuple(int(c) for c in rng.integers(120, 230, 3)))
    draw.polygon([(hx - 8, top), (hx + hw + 8, top), (hx + hw // 2, top - hw // 2)], fill=(150, 40, 30))
    draw.rectangle((hx + hw // 3, horizon - hw // 8, hx + hw // 2, horizon + hw // 4), fill=(70, 45, 30))
    img = img.filter(ImageFilter.GaussianBlur(radius=1.0))
    grain = rng.normal(0, 0.02, (h, w, 3))
    return _to_image(np.asarray(img, np.float32) / 255.0 + grain)


def _to_image(values: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def probe_audio(sample_rate: int = 16000, seed: int = 0) -> list[np.ndarray]:
    """Generated mono clips (float32, -1..1) for the speech graphs: a chord, a chirp, a
    voiced buzz shaped by vowel-like formants with a syllable rhythm, and quiet noise."""
    rng = np.random.default_rng(seed)
    t2, t3 = np.arange(2 * sample_rate) / sample_rate, np.arange(3 * sample_rate) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t2 + rng.uniform(0, 6.3)) for f in (220.0, 277.2, 329.6)) / 3
    chirp = np.sin(2 * np.pi * (200 * t3 + (3800 / (2 * 3.0)) * t3**2))
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.7 * t3)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    buzz = sum(np.sin(k * phase) / k * _formant_gain(k * pitch) for k in range(1, 30))
    buzz = buzz * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t3)) ** 2  # ~4 syllables a second
    noise = rng.normal(0, 0.05, 2 * sample_rate)
    clips = [chord, chirp, buzz, noise]
    return [(0.5 * c / max(np.abs(c).max(), 1e-9)).astype(np.float32) for c in clips]


def _formant_gain(freq: np.ndarray) -> np.ndarray:
    # resonances near an "a" vowel's first two formants
    return sum(1.0 / (1.0 + ((freq - f) / bw) ** 2) for f, bw in ((700.0, 110.0), (1200.0, 150.0))) + 0.05
