"""``daik synth``: a synthetic aerial dataset in DOTA format, for tests, demos, benchmarks and ablations.

Each image is a top view of textured ground (fields, roads, sometimes a sea with a wavy shore) with
objects of nine DOTA v1.0 classes (:data:`SYNTH_CLASSES`) that need *shape and orientation* to be told
apart:

* ``small-vehicle``: a ~2:1 car or van; the windshield and hood mark the front.
* ``large-vehicle``: a 3-4.3:1 truck; a narrower cab of a contrasting colour at the front, then a gap.
* ``ship``: 4-7:1 with a pointed bow and the white bridge / cabin towards the stern; wakes when under way.
* ``plane``: fuselage, swept wings ahead of the middle, tailplane; the box spans nose-tail and wingtips.
* ``helicopter``: a cabin, a thin tail boom and 2-5 rotor blades (the box includes the blades).
* ``storage-tank``: a round bright roof with a rim and a shaded side (its box is the enclosing square).
* ``tennis-court`` (aspect ~2.17, side lines, service boxes, dark net) versus ``basketball-court``
  (aspect ~1.87, painted keys, three-point arcs, centre circle): similar rectangles, told apart by
  aspect ratio and line pattern.
* ``harbor``: a pier from the shore into the sea.

Objects come in zones (parking lots and truck depots with rows of vehicles side by side, aprons with rows of
planes, helipads, fenced sports grounds, tank farms, piers with boats moored side by side) plus traffic on
roads, ships at sea and scattered single objects. The first zone of image ``k`` is of type ``k mod 6``, so
every class shows up within a few consecutive images. Clutter (buildings, trees) and, from ``medium`` on,
look-alike distractors that are *not* objects (plain vehicle-sized boxes, also inside parking rows; flat
discs; unlined courts; pontoons) share the scene. ``difficulty`` sets object size, density, packing, the
fraction of small and low-contrast objects, clutter, haze, blur and noise
(:data:`daik_core.data.synth.levels.LEVELS`): about 23 objects per 512 px image for ``easy``, 57 for
``medium`` and 135 for ``hard`` (a fifth of them under :data:`TINY_SIDE` pixels).

Labels are the exact rectangles of the drawn objects in the DAIK box convention
(:mod:`daik_core.structures.boxes`), written as DOTA ``labelTxt`` polygons; an object whose short side is
under :data:`TINY_SIDE` pixels is marked ``difficult 1``. Every box lies inside its image, and two boxes
overlap by at most :data:`~daik_core.data.synth.scene.MAX_OVERLAP` of the smaller one.

Image ``k`` of a dataset depends only on ``(seed, k, size, difficulty)``: it is drawn from
``numpy.random.default_rng([seed, k])``, so it is byte-identical whatever the number of images, the
number of worker processes and the process.
"""

from daik_core.data.synth.generate import (
    DIFFICULTIES,
    MAX_OVERLAP,
    SYNTH_CLASSES,
    TINY_SIDE,
    SynthSummary,
    generate_dataset,
    image_name,
    render_image,
)

__all__ = [
    "DIFFICULTIES",
    "MAX_OVERLAP",
    "SYNTH_CLASSES",
    "TINY_SIDE",
    "SynthSummary",
    "generate_dataset",
    "image_name",
    "render_image",
]
