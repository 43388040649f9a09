"""DOTA labelTxt / Task1 readers and writers (daik_core.data.dota) and class lists (data.classes)."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from daik_core.data.classes import DOTA_V1_0, DOTA_V1_5, DOTA_V2_0, resolve_classes
from daik_core.data.dota import (
    DotaLabel,
    DotaObject,
    LabelArrays,
    Task1Detections,
    find_images,
    label_to_arrays,
    read_label_arrays,
    read_label_dir,
    read_label_dir_arrays,
    read_label_file,
    read_task1_dir,
    read_task1_file,
    task1_path,
    write_label_file,
    write_task1_dir,
    write_task1_file,
)
from daik_core.errors import DaikError, DataFormatError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- labelTxt
def test_headers_tokens_and_difficult(tmp_path: Path) -> None:
    p = write(
        tmp_path / "P0001.txt",
        "imagesource:GoogleEarth\ngsd:0.146343590398\n\n"
        "1 2 3 4 5 6 7 8 plane\n"
        "10.5 20 30 40 50 60 70 80 small-vehicle 1\n"
        "  1 1 2 1 2 2 1 2   ship   2  \n",
    )
    label = read_label_file(p)
    assert label.imagesource == "GoogleEarth"
    assert label.gsd == pytest.approx(0.146343590398)
    assert label.objects == [
        DotaObject((1, 2, 3, 4, 5, 6, 7, 8), "plane", 0),
        DotaObject((10.5, 20, 30, 40, 50, 60, 70, 80), "small-vehicle", 1),
        DotaObject((1, 1, 2, 1, 2, 2, 1, 2), "ship", 2),
    ]


@pytest.mark.parametrize("gsd", ["null", "None", "", "NaN"])
def test_gsd_without_value(tmp_path: Path, gsd: str) -> None:
    label = read_label_file(write(tmp_path / "a.txt", f"imagesource:x\ngsd:{gsd}\n"))
    assert label.gsd is None and label.objects == []


def test_headers_case_insensitive_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes("\ufeffImageSource:GF2\nGSD:0.5\n0 0 1 0 1 1 0 1 plane\n".encode())
    label = read_label_file(p)
    assert (label.imagesource, label.gsd, len(label.objects)) == ("GF2", 0.5, 1)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1 2 3 4 5 6 7 8", "got 8"),
        ("1 2 3 4 5 6 7 8 plane 0 extra", "got 11"),
        ("1 2 3 x 5 6 7 8 plane", "coordinate 4 'x' is not a number"),
        ("1 2 3 4 5 6 7 nan plane", "not finite"),
        ("1 2 3 4 inf 6 7 8 plane", "not finite"),
        ("1 2 3 4 5 6 7 8 plane 3", "difficult flag 3"),
        ("1 2 3 4 5 6 7 8 plane yes", "difficult flag 'yes'"),
        ("1 2 3 4 5 6 7 8 tank 0", "unknown class 'tank'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    p = write(tmp_path / "bad.txt", f"imagesource:x\ngsd:1\n0 0 1 0 1 1 0 1 plane\n{line}\n")
    with pytest.raises(DataFormatError) as info:
        read_label_file(p, classes=("plane", "ship"))
    err = info.value
    assert (err.path, err.line) == (str(p), 4)
    assert "bad.txt:4: " in str(err) and problem in str(err)


def test_missing_or_binary_label_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nope\.txt: annotation file does not exist"):
        read_label_file(tmp_path / "nope.txt")
    p = tmp_path / "bin.txt"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataFormatError, match=r"bin\.txt: not a UTF-8 text file"):
        read_label_file(p)


def test_skip_unknown_drops_other_classes(tmp_path: Path) -> None:
    p = write(tmp_path / "a.txt", "0 0 1 0 1 1 0 1 plane\n0 0 1 0 1 1 0 1 tank 1\n0 0 2 0 2 2 0 2 ship\n")
    label = read_label_file(p, classes=("plane", "ship"), skip_unknown=True)
    assert [o.name for o in label.objects] == ["plane", "ship"]
    assert len(read_label_file(p).objects) == 3  # without a class list every class is taken


def test_label_write_read_round_trip(tmp_path: Path) -> None:
    label = DotaLabel(
        objects=[
            DotaObject((1, 2, 3, 4, 5, 6, 7, 8), "plane", 0),
            DotaObject((0.5, 1.25, 1000.123456, 4, 5, 6, 7, 8), "ship", 2),
        ],
        imagesource="GoogleEarth",
        gsd=0.255589285596,
    )
    p = tmp_path / "sub" / "P1.txt"
    write_label_file(p, label)
    assert p.read_text().splitlines() == [
        "imagesource:GoogleEarth",
        "gsd:0.255589285596",
        "1 2 3 4 5 6 7 8 plane 0",
        "0.5 1.25 1000.123456 4 5 6 7 8 ship 2",
    ]
    assert read_label_file(p) == label
    write_label_file(p, DotaLabel())
    assert p.read_text() == "" and read_label_file(p) == DotaLabel()
    with pytest.raises(ValueError, match="6 coordinates"):
        write_label_file(p, DotaLabel([DotaObject((1, 2, 3, 4, 5, 6), "plane")]))


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_label_file(tmp_path / "a.txt", DotaLabel())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_label_to_arrays_and_label_dir(tmp_path: Path) -> None:
    write(tmp_path / "b.txt", "0 0 1 0 1 1 0 1 plane 1\n0 0 1 0 1 1 0 1 tank\n0 0 2 0 2 2 0 2 ship\n")
    write(tmp_path / "a.txt", "")
    (tmp_path / "notes.md").write_text("x")
    labels = read_label_dir(tmp_path)
    assert list(labels) == ["a", "b"]
    polys, ids, difficult = label_to_arrays(labels["b"], ("ship", "plane"))
    assert polys.shape == (2, 8) and polys.dtype == np.float64
    assert ids.tolist() == [1, 0] and difficult.tolist() == [1, 0]
    polys, ids, difficult = label_to_arrays(labels["a"], ("ship",))
    assert polys.shape == (0, 8) and ids.shape == (0,) and difficult.shape == (0,)
    with pytest.raises(DataFormatError, match="annotation folder does not exist"):
        read_label_dir(tmp_path / "missing")


def test_label_arrays_match_the_objects(tmp_path: Path) -> None:
    p = write(
        tmp_path / "P1.txt",
        "imagesource:GoogleEarth\r\ngsd:0.5\r\n\r\n"
        "1 2 3 4 5 6 7 8 plane\r\n"
        "\t10.5  20 30 40 50 60 70 80 small-vehicle 1\n"
        "1e1 1_0 -0 +2 2 2 1 2 ship 02\n",
    )
    arrays = read_label_arrays(p)
    assert (arrays.imagesource, arrays.gsd, arrays.names) == (
        "GoogleEarth",
        0.5,
        ["plane", "small-vehicle", "ship"],
    )
    assert arrays.polys.dtype == np.float64 and arrays.polys.shape == (3, 8)
    assert arrays.polys[2].tolist() == [10.0, 10.0, 0.0, 2.0, 2.0, 2.0, 1.0, 2.0]  # as float() reads them
    assert arrays.difficult.tolist() == [0, 1, 2]  # "02" is 2, as int() reads it
    assert arrays.to_label() == read_label_file(p)
    assert LabelArrays.from_label(arrays.to_label()).to_label() == arrays.to_label()
    assert list(read_label_dir_arrays(tmp_path)) == ["P1"]
    kept = read_label_arrays(p, classes=("ship", "plane"), skip_unknown=True)
    assert (
        kept.names == ["plane", "ship"] and kept.polys.shape == (2, 8) and kept.difficult.tolist() == [0, 2]
    )
    assert LabelArrays.from_label(DotaLabel()).polys.shape == (0, 8)


@pytest.mark.parametrize(
    ("lines", "line", "problem"),
    [
        (["0 0 1 0 1 1 0 1 tank", "0 0 1 0 1 x 0 1 plane"], 1, "unknown class 'tank'"),
        (["0 0 1 0 1 x 0 1 plane", "0 0 1 0 1 1 0 1 tank"], 1, "coordinate 6 'x' is not a number"),
        (["0 0 1 0 1 1 0 1 plane", "gsd:abc"], 2, "gsd 'abc' is not a number"),
        (["imagesource : x", "0 0 1 0 1 1 0 1 plane"], 1, "got 3"),
        (["0 0 1 0 1 1 0 1 plane 01x"], 1, "difficult flag '01x'"),
    ],
)
def test_the_first_bad_line_is_named(tmp_path: Path, lines: list[str], line: int, problem: str) -> None:
    p = write(tmp_path / "bad.txt", "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_label_arrays(p, classes=("plane", "ship"))
    assert info.value.line == line and problem in str(info.value)


def test_find_images_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "c.tif", "d.txt", "e.png.bak"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in find_images(tmp_path)] == ["a.JPG", "b.png", "c.tif"]


# ------------------------------------------------------------------------------------------------ Task1
def test_task1_round_trip(tmp_path: Path) -> None:
    ids = ["P0001", "P0001", "P0002__1__0___0"]
    scores = np.array([0.9, 0.123456789, 1e-4])
    polys = np.arange(24, dtype=np.float64).reshape(3, 8) + 0.125
    p = task1_path(tmp_path, "plane")
    assert p.name == "Task1_plane.txt"
    write_task1_file(p, ids, scores, polys)
    assert p.read_text().splitlines()[0] == "P0001 0.9 0.12 1.12 2.12 3.12 4.12 5.12 6.12 7.12"
    dets = read_task1_file(p)
    assert dets.image_ids == ids and len(dets) == 3
    np.testing.assert_allclose(dets.scores, scores, rtol=1e-5)
    np.testing.assert_allclose(dets.polys, polys, atol=0.005 + 1e-9)
    with pytest.raises(ValueError, match="same length"):
        write_task1_file(p, ids[:2], scores, polys)


def test_task1_whitespace_and_line_endings(tmp_path: Path) -> None:
    p = write(tmp_path / "Task1_plane.txt", "a 0.5 1 2 3 4 5 6 7 8\r\n\r\n  b\t1e-1 0 0 1 0 1 1 0 1_0  \n")
    dets = read_task1_file(p)
    assert dets.image_ids == ["a", "b"]
    assert dets.scores.tolist() == [0.5, 0.1]
    assert dets.polys.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 1, 0, 1, 1, 0, 10]]
    assert read_task1_file(write(tmp_path / "Task1_ship.txt", "\n \n")).polys.shape == (0, 8)


def test_task1_dir_round_trip_and_missing_class(tmp_path: Path) -> None:
    dets = {
        "plane": Task1Detections(["a"], np.array([0.5]), np.ones((1, 8))),
        "ship": Task1Detections.empty(),
    }
    write_task1_dir(tmp_path, dets)
    assert (tmp_path / "Task1_ship.txt").read_text() == ""
    back = read_task1_dir(tmp_path, ["plane", "ship", "harbor"])
    assert back["plane"].image_ids == ["a"] and len(back["ship"]) == 0 and len(back["harbor"]) == 0
    assert back["harbor"].polys.shape == (0, 8)
    with pytest.raises(DataFormatError, match="detection folder does not exist"):
        read_task1_dir(tmp_path / "missing", ["plane"])
    with pytest.raises(DataFormatError, match="detection file does not exist"):
        read_task1_file(tmp_path / "Task1_harbor.txt")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("img 0.5 1 2 3 4 5 6 7", "got 9"),
        ("img high 1 2 3 4 5 6 7 8", "score 'high' is not a number"),
        ("img nan 1 2 3 4 5 6 7 8", "score 'nan' is not finite"),
        ("img 0.5 1 2 3 4 5 6 7 -inf", "coordinate 8 '-inf' is not finite"),
    ],
)
def test_task1_malformed_line(tmp_path: Path, line: str, problem: str) -> None:
    p = write(tmp_path / "Task1_plane.txt", f"img 0.9 1 2 3 4 5 6 7 8\n\n{line}\n")
    with pytest.raises(DataFormatError) as info:
        read_task1_file(p)
    assert info.value.line == 3
    assert "Task1_plane.txt:3: " in str(info.value) and problem in str(info.value)


# ---------------------------------------------------------------------------------------------- classes
def test_named_class_lists() -> None:
    assert len(resolve_classes("dota1.0")) == 15 and resolve_classes("dota1.0") == DOTA_V1_0
    assert len(resolve_classes(" DOTA1.5 ")) == 16 and resolve_classes("dota1.5") == DOTA_V1_5
    assert len(resolve_classes("dota2.0")) == 18 and resolve_classes("dota2.0") == DOTA_V2_0
    assert DOTA_V1_0[0] == "plane" and DOTA_V1_0[-1] == "helicopter"
    assert DOTA_V1_5[-1] == "container-crane" and DOTA_V2_0[-2:] == ("airport", "helipad")


def test_custom_class_lists() -> None:
    assert resolve_classes("plane, ship") == ("plane", "ship")
    assert resolve_classes(["car", "truck"]) == ("car", "truck")
    assert resolve_classes("car") == ("car",)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("plane,ship,plane", "duplicate class names ['plane']"),
        (["a", "b", "a", "b"], "duplicate class names ['a', 'b']"),
        ("", "empty class list"),
        ([], "empty class list"),
        ("plane,,ship", "empty class name"),
        (["small vehicle"], "contains whitespace"),
        ("dota3.0", "unknown class list 'dota3.0'"),
    ],
)
def test_bad_class_lists(spec: str | list[str], problem: str) -> None:
    with pytest.raises(DaikError) as info:
        resolve_classes(spec)
    assert problem in str(info.value)


def test_data_format_error_survives_pickling() -> None:
    import pickle

    from daik_core.errors import DataFormatError

    err = pickle.loads(pickle.dumps(DataFormatError("a/b.txt", 7, "bad thing")))
    assert isinstance(err, DataFormatError)
    assert (err.path, err.line, err.problem, str(err)) == ("a/b.txt", 7, "bad thing", "a/b.txt:7: bad thing")
