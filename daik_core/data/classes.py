"""Class lists: DOTA v1.0, v1.5, v2.0 (in the DOTA devkit's order) and custom lists."""

from __future__ import annotations

from collections.abc import Sequence

from daik_core.errors import DaikError

DOTA_V1_0: tuple[str, ...] = (
    "plane",
    "baseball-diamond",
    "bridge",
    "ground-track-field",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "tennis-court",
    "basketball-court",
    "storage-tank",
    "soccer-ball-field",
    "roundabout",
    "harbor",
    "swimming-pool",
    "helicopter",
)
DOTA_V1_5: tuple[str, ...] = (*DOTA_V1_0, "container-crane")
DOTA_V2_0: tuple[str, ...] = (*DOTA_V1_5, "airport", "helipad")

NAMED_CLASS_LISTS: dict[str, tuple[str, ...]] = {
    "dota1.0": DOTA_V1_0,
    "dota1.5": DOTA_V1_5,
    "dota2.0": DOTA_V2_0,
}


def resolve_classes(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A class list from a name (``dota1.0``, ``dota1.5``, ``dota2.0``), a comma-separated string
    (``"plane,ship"``) or a sequence of names. Names must be unique and non-empty."""
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in NAMED_CLASS_LISTS:
            return NAMED_CLASS_LISTS[key]
        names = [n.strip() for n in spec.split(",")]
        if len(names) == 1 and not names[0]:
            raise DaikError("classes: empty class list")
    else:
        names = [str(n).strip() for n in spec]
    if not names:
        raise DaikError("classes: empty class list")
    for n in names:
        if not n:
            raise DaikError(f"classes: empty class name in {spec!r}")
        if any(c.isspace() for c in n):
            raise DaikError(f"classes: class name {n!r} contains whitespace (DOTA files split on it)")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DaikError(f"classes: duplicate class names {dup}")
    if len(names) == 1 and isinstance(spec, str) and "," not in spec:
        known = ", ".join(NAMED_CLASS_LISTS)
        # a single bare word that is not a named list is most likely a typo of one
        if "." in names[0]:
            raise DaikError(f"classes: unknown class list {spec!r} (named lists: {known})")
    return tuple(names)
