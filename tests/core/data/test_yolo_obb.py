"""Ultralytics' YOLO-OBB layout as a dataset source: a `daik synth` set converted to it reads back as the same
objects as its DOTA labels, in both folder layouts and through a data YAML in a job spec; bad labels are
errors that name the file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from daik_core.config import SpecError, load_spec
from daik_core.data.dataset import DotaDataset
from daik_core.data.dota import read_label_file
from daik_core.data.image_header import read_image_size
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from daik_core.data.yolo_obb import labels_dir_for, read_data_yaml, yolo_split_dirs
from daik_core.errors import DataFormatError


def dota_to_yolo_obb(src: Path, images: Path, labels: Path, classes: tuple[str, ...]) -> int:
    """Convert a DOTA folder (``src/images``, ``src/labelTxt``) to YOLO-OBB label files (corners divided by
    the image size) next to copies of its images; returns the number of objects."""
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    count = 0
    for image in sorted((src / "images").iterdir()):
        shutil.copy(image, images / image.name)
        width, height = read_image_size(image)
        lines = []
        for obj in read_label_file(src / "labelTxt" / f"{image.stem}.txt").objects:
            xy = [v / (width if i % 2 == 0 else height) for i, v in enumerate(obj.poly)]
            lines.append(" ".join([str(classes.index(obj.name)), *(f"{v:.10f}" for v in xy)]))
            count += 1
        (labels / f"{image.stem}.txt").write_text("".join(line + "\n" for line in lines))
    return count


def write_yolo_dataset(dota_train: Path, dota_val: Path, root: Path) -> Path:
    """``root/images/{train,val}``, ``root/labels/{train,val}`` and ``root/data.yaml`` (names as a mapping,
    ``path`` relative to the YAML's folder), as Ultralytics lays a dataset out; returns the YAML."""
    for split, src in (("train", dota_train), ("val", dota_val)):
        dota_to_yolo_obb(src, root / "images" / split, root / "labels" / split, SYNTH_CLASSES)
    names = dict(enumerate(SYNTH_CLASSES))
    data = {"path": ".", "train": "images/train", "val": "images/val", "names": names}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    generate_dataset(root / "dota-train", images=3, size=128, seed=0, difficulty="easy", progress=False)
    generate_dataset(root / "dota-val", images=2, size=160, seed=1, difficulty="easy", progress=False)
    write_yolo_dataset(root / "dota-train", root / "dota-val", root / "yolo")
    return root


def _objects(dataset: DotaDataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for i in range(dataset.num_images):
        o = dataset.source_objects(i)
        out.append((o.polys.reshape(-1, 8), o.labels, o.difficult))
    return out


@pytest.mark.parametrize("layout", ["split folder", "flat folder"])
def test_a_converted_set_reads_as_the_same_objects_as_its_dota_labels(
    synth: Path, tmp_path: Path, layout: str
) -> None:
    dota = DotaDataset(synth / "dota-train", SYNTH_CLASSES, 64, train=False)
    if layout == "split folder":  # Ultralytics': ds/images/train with its labels in ds/labels/train
        folder = synth / "yolo" / "images" / "train"
        assert yolo_split_dirs(folder) == (folder, synth / "yolo" / "labels" / "train")
    else:  # a folder holding images/ and labels/
        folder = tmp_path / "flat"
        shutil.copytree(synth / "yolo" / "images" / "train", folder / "images")
        shutil.copytree(synth / "yolo" / "labels" / "train", folder / "labels")
    yolo = DotaDataset(folder, SYNTH_CLASSES, 64, train=False)
    assert [r.image_id for r in yolo.images] == [r.image_id for r in dota.images]
    assert yolo.num_objects == dota.num_objects > 0
    for (yp, yl, yd), (dp, dl, dd) in zip(_objects(yolo), _objects(dota), strict=True):
        np.testing.assert_allclose(yp, dp, atol=1e-6)
        np.testing.assert_array_equal(yl, dl)
        assert not yd.any() and not dd.any()
    # the training samples, windows and boxes, are the same too
    np.testing.assert_allclose(yolo[0].boxes, dota[0].boxes, atol=1e-4)


def test_a_data_yaml_in_a_spec_gives_splits_and_class_names(synth: Path) -> None:
    spec_file = synth / "spec.yaml"
    spec_file.write_text("name: y\ndataset: {train: yolo/data.yaml}\n")
    spec = load_spec(spec_file)
    assert spec.dataset.train == str(synth / "yolo" / "images" / "train")
    assert spec.dataset.val == str(synth / "yolo" / "images" / "val")  # the YAML's val split
    assert spec.dataset.class_names() == SYNTH_CLASSES  # its names, in index order
    # explicit classes must be its names (YOLO class k is the k-th name)
    spec_file.write_text("name: y\ndataset: {train: yolo/data.yaml, classes: [ship, plane]}\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: dataset\.classes \['ship', 'plane'\] differ"):
        load_spec(spec_file)
    spec_file.write_text(f"name: y\ndataset: {{train: yolo/data.yaml, classes: {list(SYNTH_CLASSES)}}}\n")
    assert load_spec(spec_file).dataset.class_names() == SYNTH_CLASSES


def test_data_yaml_paths_and_names(tmp_path: Path) -> None:
    (tmp_path / "sets" / "ds" / "images" / "tr").mkdir(parents=True)
    data = tmp_path / "cfg" / "data.yaml"
    data.parent.mkdir()
    data.write_text("path: ../sets/ds\ntrain: images/tr\nnames: [a, b]\n")
    got = read_data_yaml(data)
    assert got.root == tmp_path / "sets" / "ds"  # relative to the YAML's folder
    assert got.split("train") == tmp_path / "sets" / "ds" / "images" / "tr"
    assert got.names == ("a", "b")
    with pytest.raises(DataFormatError, match=r"data\.yaml: no 'val' split"):
        got.split("val")
    assert labels_dir_for(Path("/x/images/y/images/tr")) == Path("/x/images/y/labels/tr")
    for text, problem in (
        ("train: a\nnames: {0: a, 2: b}\n", "keys must be 0 .. 1"),
        ("train: list.txt\nnames: [a]\n", "only an image folder"),
        ("names: [a]\n", "train: missing"),
        ("train: a\nnames: [a]\nnc: 2\n", "nc is 2"),
    ):
        data.write_text(text)
        with pytest.raises(DataFormatError, match=problem):
            read_data_yaml(data)


def test_background_images_and_bad_labels(synth: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(synth / "yolo" / "images" / "train", root / "images")
    shutil.copytree(synth / "yolo" / "labels" / "train", root / "labels")
    first = sorted((root / "labels").iterdir())[0]
    first.unlink()  # an image without a label file: a background image, no objects
    ds = DotaDataset(root, SYNTH_CLASSES, 64, train=False)
    assert len(ds.source_objects(0).labels) == 0 and ds.num_images == 3

    second = sorted((root / "labels").iterdir())[0]
    good = second.read_text()
    for line, problem in (
        ("3 10 10 50 10 50 40 10 40", r":2: coordinate 1 = 10 is outside \[0, 1\]"),  # pixels, not normalised
        ("9 0.1 0.1 0.5 0.1 0.5 0.4 0.1 0.4", ":2: class 9 is not one of the 9 classes"),
        ("1 0.1 0.1 0.5 0.1 0.5 0.4", ":2: expected 9 fields"),
    ):
        second.write_text(good.splitlines()[0] + "\n" + line + "\n")
        with pytest.raises(DataFormatError, match=rf"{second.name}{problem}"):
            DotaDataset(root, SYNTH_CLASSES, 64, train=False)
    second.write_text(good)
    (root / "labels" / "orphan.txt").write_text("")
    with pytest.raises(DataFormatError, match=r"orphan\.txt: no image orphan\.\* in"):
        DotaDataset(root, SYNTH_CLASSES, 64, train=False)
    with pytest.raises(DataFormatError, match="a YOLO data YAML"):
        DotaDataset(synth / "yolo" / "data.yaml", SYNTH_CLASSES, 64, train=False)
