"""The synthetic dataset's files are pinned byte for byte: image ``k`` of a dataset depends only on
``(seed, k, size, difficulty)``, and a change to the generator's code that keeps its design (a refactoring)
must keep every pixel. Hashes computed with the generator before it became a package."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from daik_core.data.synth import generate_dataset

PINNED = {
    ("easy", 1): {
        "images/synth_000000.png": "234f6d0c8f2786d199f0697512ad3a5761e25270e54ce2b351699e8de6bdd1a1",
        "images/synth_000001.png": "9c5a16ff489527453a95d5ed1cdf6b7272477182910970396fb21c526817226f",
        "labelTxt/synth_000000.txt": "d221ad5d59442f0b9279a3e549d48c59fc4933d2195cd0ecb932b8e2808c051c",
        "labelTxt/synth_000001.txt": "2f06e1acbef607079701cc66b75971bb609a7ad7f959af7485906e590449d230",
    },
    ("medium", 0): {
        "images/synth_000000.png": "bfce9a9c4d7254156cfc6c66abba39664199e7478af3a4581263c1d6c08558b5",
        "images/synth_000001.png": "f129a2f6e571504f5ce29a12d672750a023559232e6edef8ea66820939bb1479",
        "labelTxt/synth_000000.txt": "357cf522a4d0f5348fe1c60b0efd144940466f538fa1c5047288c6432ae530ad",
        "labelTxt/synth_000001.txt": "93846bd6e92b45f731a06e447117ef3dd90dbf8aac7bd1c8c3aba1d69e5179a7",
    },
    ("hard", 2): {
        "images/synth_000000.png": "8629f89deb96eef202817d43c00e287ad76186b3dd2d016fbdaaa4c9f2bbcf7e",
        "images/synth_000001.png": "6e89d4737df0775d43a6aa22d95bc9f14ee19ee7c008133b15019ced9d956241",
        "labelTxt/synth_000000.txt": "e2597284624b121d8c628c4142060b9f0ea9fbcf0738a1ce967636a72de05ef4",
        "labelTxt/synth_000001.txt": "36e7fee1767bf6317bea2402b702f9fba5336b50254e5444dc490f19debcf6d1",
    },
}


@pytest.mark.parametrize(("difficulty", "seed"), list(PINNED))
def test_generated_files_are_pinned(tmp_path: Path, difficulty: str, seed: int) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, images=2, size=128, seed=seed, difficulty=difficulty, progress=False, workers=1)
    got = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in PINNED[difficulty, seed]}
    assert got == PINNED[difficulty, seed]
