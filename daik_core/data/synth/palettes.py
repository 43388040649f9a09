"""The colours of the synthetic scenes, as data: each palette is a list of ``(colour, weight)`` pairs that
:func:`daik_core.data.synth.sprites.pick` draws from (RGB, 0..255), plus the scene's fixed colours."""

from __future__ import annotations

Color = tuple[float, float, float]  # RGB, 0..255

# ------------------------------------------------------------------------------------------ objects
CAR_COLORS: list[tuple[Color, float]] = [
    ((228, 228, 226), 0.24),  # white
    ((175, 178, 182), 0.18),  # silver
    ((38, 38, 42), 0.18),  # black
    ((110, 110, 112), 0.13),  # grey
    ((160, 30, 30), 0.08),  # red
    ((35, 60, 120), 0.08),  # blue
    ((200, 175, 120), 0.04),  # beige
    ((40, 90, 55), 0.04),  # green
    ((215, 170, 40), 0.03),  # yellow
]
CAB_COLORS: list[tuple[Color, float]] = [
    ((190, 35, 30), 0.22),
    ((30, 70, 160), 0.2),
    ((235, 235, 230), 0.14),
    ((230, 180, 30), 0.12),
    ((35, 110, 60), 0.1),
    ((45, 45, 50), 0.12),
    ((230, 110, 30), 0.1),
]
TRAILER_COLORS: list[tuple[Color, float]] = [
    ((225, 225, 222), 0.35),
    ((170, 172, 175), 0.2),
    ((150, 60, 40), 0.1),  # container rust
    ((40, 90, 140), 0.1),  # container blue
    ((60, 110, 70), 0.08),
    ((110, 112, 115), 0.1),
    ((200, 160, 60), 0.07),
]
HULL_COLORS: list[tuple[Color, float]] = [
    ((45, 48, 55), 0.25),
    ((120, 40, 35), 0.18),
    ((30, 45, 85), 0.17),
    ((230, 232, 235), 0.2),
    ((95, 100, 105), 0.2),
]
DECK_COLORS: list[tuple[Color, float]] = [
    ((150, 70, 50), 0.25),  # rust red
    ((70, 110, 80), 0.2),  # green
    ((135, 135, 130), 0.2),  # grey
    ((165, 130, 90), 0.15),  # teak
    ((80, 110, 140), 0.2),  # blue-grey
]
PLANE_BODY: list[tuple[Color, float]] = [
    ((238, 238, 240), 0.55),
    ((205, 208, 212), 0.3),
    ((160, 165, 170), 0.15),
]
ACCENT_COLORS: list[tuple[Color, float]] = [
    ((200, 30, 40), 0.25),
    ((30, 60, 150), 0.3),
    ((240, 170, 20), 0.15),
    ((30, 120, 70), 0.15),
    ((60, 60, 60), 0.15),
]
HELI_COLORS: list[tuple[Color, float]] = [
    ((80, 88, 60), 0.35),  # olive
    ((70, 72, 78), 0.2),
    ((225, 225, 225), 0.15),
    ((190, 40, 35), 0.15),
    ((230, 190, 40), 0.15),
]
TANK_ROOF: list[tuple[Color, float]] = [
    ((236, 236, 232), 0.45),
    ((200, 200, 196), 0.3),
    ((180, 190, 170), 0.15),
    ((150, 150, 150), 0.1),
]
COURT_COLORS: list[tuple[Color, float]] = [
    ((60, 120, 75), 0.3),  # green
    ((45, 85, 140), 0.3),  # blue
    ((170, 85, 55), 0.2),  # clay red
    ((110, 70, 110), 0.08),  # purple
    ((190, 130, 80), 0.12),  # wood / orange
]
ROOF_COLORS: list[tuple[Color, float]] = [
    ((150, 150, 148), 0.3),
    ((175, 95, 70), 0.2),
    ((205, 200, 190), 0.2),
    ((95, 90, 88), 0.15),
    ((120, 130, 140), 0.15),
]

# ------------------------------------------------------------------------------------------ ground
GROUND_COLORS: list[tuple[Color, float]] = [
    ((150, 140, 115), 0.3),  # dry soil
    ((105, 120, 80), 0.25),  # grass
    ((140, 138, 132), 0.25),  # urban grey
    ((120, 100, 80), 0.1),  # dark soil
    ((185, 170, 140), 0.1),  # sand
]
FIELD_TINTS: list[Color] = [(-18, 10, -20), (12, 10, -12), (-12, -14, -16), (16, 14, 10), (-6, 4, -14)]
ASPHALT: Color = (82.0, 84.0, 88.0)
CONCRETE: Color = (176.0, 174.0, 168.0)
