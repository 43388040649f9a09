"""The difficulty levels of the synthetic scenes (``easy``, ``medium``, ``hard``), as data: one
:class:`Level` of sampling ranges each (see :mod:`daik_core.data.synth`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """What a difficulty level sets. Counts are per 512 x 512 pixels of image area."""

    scale: tuple[float, float]  # object size factor (1.0: a car is ~18 px long)
    zones: tuple[float, float]
    roads: tuple[float, float]
    singles: tuple[float, float]
    buildings: tuple[float, float]
    trees: tuple[float, float]
    lookalikes: tuple[float, float]
    spacing: tuple[float, float]  # free space between neighbours of a row, in object widths
    fill: tuple[float, float]  # fraction of the places of a row or grid that get an object
    traffic_gap: tuple[float, float]  # gap between vehicles on a road, in vehicle lengths
    fade: tuple[float, float]  # object contrast against the local ground (1: full colours)
    contrast: tuple[float, float]
    haze: tuple[float, float]
    blur: tuple[float, float]  # Gaussian sigma (px)
    noise: tuple[float, float]  # sensor noise sigma (grey levels)
    tiny_zone: float  # probability that a zone has smaller objects (see Scene.zone_k)


LEVELS: dict[str, Level] = {
    "easy": Level(
        scale=(1.15, 1.5),
        zones=(1.5, 2.5),
        roads=(0.0, 1.2),
        singles=(2, 4),
        buildings=(3, 8),
        trees=(4, 10),
        lookalikes=(0, 0),
        spacing=(0.5, 0.9),
        fill=(0.45, 0.7),
        traffic_gap=(2.0, 5.0),
        fade=(1.0, 1.0),
        contrast=(0.95, 1.05),
        haze=(0.0, 0.03),
        blur=(0.0, 0.3),
        noise=(1.0, 2.5),
        tiny_zone=0.0,
    ),
    "medium": Level(
        scale=(0.8, 1.2),
        zones=(3.0, 5.0),
        roads=(0.8, 2.2),
        singles=(4, 9),
        buildings=(8, 20),
        trees=(8, 20),
        lookalikes=(3, 8),
        spacing=(0.2, 0.6),
        fill=(0.6, 0.85),
        traffic_gap=(0.8, 3.0),
        fade=(0.7, 1.0),
        contrast=(0.8, 1.0),
        haze=(0.0, 0.12),
        blur=(0.2, 0.7),
        noise=(2.0, 5.0),
        tiny_zone=0.15,
    ),
    "hard": Level(
        scale=(0.68, 1.0),
        zones=(6.0, 9.0),
        roads=(1.5, 3.2),
        singles=(8, 16),
        buildings=(18, 35),
        trees=(15, 35),
        lookalikes=(14, 28),
        spacing=(0.04, 0.25),
        fill=(0.8, 0.97),
        traffic_gap=(0.25, 1.2),
        fade=(0.45, 0.9),
        contrast=(0.55, 0.8),
        haze=(0.08, 0.25),
        blur=(0.5, 1.1),
        noise=(5.0, 10.0),
        tiny_zone=0.35,
    ),
}
