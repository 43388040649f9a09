import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daik_core.config import (
    JobSpec,
    SpecError,
    deep_merge,
    load_spec,
    parse_spec,
    relative_spec_paths,
    resolve_spec_paths,
    spec_overrides,
)

EXAMPLE = textwrap.dedent(
    """\
    name: synth-n
    kind: train                      # train | distill (distill arrives with the distillation issue)
    dataset:
      train: data/synth/train        # DOTA layout: images/ and labelTxt/
      val: data/synth/val
      classes: dota1.0               # or an explicit list
      split: {size: 1024, gap: 200}  # optional: tile images larger than this
    student: {preset: n}             # n | s | m | l
    hparams: {epochs: 30, batch: 16, imgsz: 512, lr: 0.0008, seed: 0, device: auto, workers: 2}
    output: runs/synth-n
    """
)


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text(EXAMPLE)
    for split in ("train", "val"):
        (tmp_path / "data" / "synth" / split).mkdir(parents=True)
    spec = load_spec(p)
    assert spec.name == "synth-n" and spec.kind == "train"
    assert spec.student.preset == "n" and spec.student.reg_max == 16
    assert spec.dataset.split is not None and spec.dataset.split.gap == 200
    assert spec.hparams.imgsz == 512 and spec.hparams.lr == pytest.approx(8e-4)
    assert len(spec.dataset.class_names()) == 15
    # relative paths are relative to the spec file's folder
    assert spec.dataset.train == str(tmp_path / "data" / "synth" / "train")
    assert spec.output_dir() == tmp_path / "runs" / "synth-n"
    # the JSON form of the same spec round-trips
    j = tmp_path / "spec.json"
    j.write_text(spec.model_dump_json())
    assert load_spec(j) == spec


def test_documented_example_in_module_docstring_matches() -> None:
    import daik_core.config as config

    assert "student: {preset: n}" in (config.__doc__ or "")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"student": {"preset": "xl"}}, "student.preset"),
        ({"hparams": {"epochs": -1}}, "hparams.epochs"),
        ({"hparams": {"imgsz": 500}}, "hparams.imgsz"),
        ({"hparams": {"lr": 0}}, "hparams.lr"),
        ({"hparams": {"device": "gpu0"}}, "hparams.device"),
        ({"hparams": {"epoch": 3}}, "hparams.epoch"),
        ({"colour": "red"}, "colour"),
        ({"dataset": {"train": "x", "classes": "dota9.0"}}, "dataset.classes"),
        ({"dataset": {"train": "x", "classes": "a,a"}}, "dataset.classes"),
        ({"dataset": {"train": "x", "split": {"size": 100, "gap": 100}}}, "dataset.split"),
        ({"name": "bad name/../"}, "name"),
    ],
)
def test_bad_values_name_the_field(patch: dict, field: str) -> None:
    data = {"name": "x", "dataset": {"train": "data/t"}}
    for k, v in patch.items():
        data[k] = v
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="s.yaml")
    assert f"{field}:" in str(info.value) or f"{field}." in str(info.value)
    assert str(info.value).startswith("s.yaml: ")


def test_distill_needs_a_teacher() -> None:
    with pytest.raises(SpecError, match="teacher"):
        parse_spec({"name": "d", "kind": "distill", "dataset": {"train": "t"}})
    spec = parse_spec(
        {"name": "d", "kind": "distill", "dataset": {"train": "t"}, "teacher": {"checkpoint": "t.pt"}}
    )
    assert spec.teacher is not None and spec.teacher.checkpoint == "t.pt"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ndataset: {train: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_spec(p)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_defaults_are_documented_values() -> None:
    spec = JobSpec.model_validate({"name": "x", "dataset": {"train": "t"}})
    assert spec.assigner.topk == 13 and spec.assigner.alpha == 1.0 and spec.assigner.beta == 6.0
    assert spec.loss.w_cls == 1.0 and spec.loss.w_box == 2.5 and spec.loss.w_dfl == 0.5
    assert spec.loss.w_angle == 0.05 and spec.loss.csl_sigma == 6.0
    assert json.loads(spec.model_dump_json())["hparams"]["optimizer"] == "adamw"


def test_importing_the_spec_loads_no_torch() -> None:
    code = "import sys, daik_core.config; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_distillation_losses_default_off_with_documented_values() -> None:
    spec = parse_spec({"name": "x", "dataset": {"train": "t"}})
    losses = spec.losses
    assert not losses.needs_teacher() and not losses.aal.enabled and losses.feat.kind == "none"
    assert not any(getattr(losses, k).enabled for k in ("ad", "aal", "sad", "ld", "cls_kd", "logit_kd"))
    assert (losses.ad.weight, losses.ad.tau, losses.ad.sigmoid_softmax) == (1.0, 10.0, False)
    assert (losses.aal.form, losses.aal.r, losses.aal.beta, losses.aal.gamma) == ("table", 3.0, 4.0, 3.0)
    assert (losses.sad.kl_weight, losses.sad.tau) == (0.0, 20.0)
    assert (losses.ld.weight, losses.ld.tau) == (1.0, 20.0)
    ck = losses.cls_kd
    assert (ck.weight, ck.temperature, ck.scope, ck.form) == (4.0, 1.0, "all", "binary")
    softmax = parse_spec({"name": "x", "dataset": {"train": "t"}, "losses": {"cls_kd": {"form": "softmax"}}})
    assert softmax.losses.cls_kd.temperature == 10.0  # the softmax form's own default
    binary = parse_spec({"name": "x", "dataset": {"train": "t"}, "losses": {"cls_kd": {"form": "binary"}}})
    assert binary.losses.cls_kd.temperature == 1.0  # the binary form's own default
    explicit = {"cls_kd": {"form": "binary", "tau": 2.5}}
    assert (
        parse_spec({"name": "x", "dataset": {"train": "t"}, "losses": explicit}).losses.cls_kd.temperature
        == 2.5
    )
    assert losses.logit_kd.tau == 4.0 and losses.feat.tau == 4.0 and losses.decay == "none"


@pytest.mark.parametrize(
    ("losses", "field"),
    [
        ({"ad": {"enabled": True, "lambda": 1}}, "losses.ad.lambda"),
        ({"feat": {"kind": "attention"}}, "losses.feat.kind"),
        ({"ld": {"tau": 0}}, "losses.ld.tau"),
        ({"decay": "linear"}, "losses.decay"),
        ({"kd": {}}, "losses.kd"),
    ],
)
def test_bad_distillation_values_name_the_field(losses: dict, field: str) -> None:
    data = {"name": "d", "kind": "distill", "dataset": {"train": "t"}, "teacher": {"checkpoint": "t.pt"}}
    with pytest.raises(SpecError, match=f"{field}:"):
        parse_spec({**data, "losses": losses}, source="s.yaml")


def test_distillation_terms_need_a_distill_job() -> None:
    data = {"name": "d", "dataset": {"train": "t"}, "losses": {"ad": {"enabled": True}}}
    with pytest.raises(SpecError, match="losses"):
        parse_spec(data)
    spec = parse_spec({**data, "kind": "distill", "teacher": {"checkpoint": "t.pt"}})
    assert spec.losses.ad.enabled and spec.losses.needs_teacher()
    # AAL alone reads no teacher: valid in a train job
    assert parse_spec({**data, "losses": {"aal": {"enabled": True}}}).losses.aal.enabled


def _spec_file(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_relative_paths_resolve_against_the_spec_folder_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "runs" / "t" / "weights").mkdir(parents=True)
    (tmp_path / "runs" / "t" / "weights" / "best.pt").write_bytes(b"")
    absolute = tmp_path / "data" / "train"
    path = _spec_file(
        tmp_path / "configs",
        f"""\
        name: s
        kind: distill
        dataset: {{train: ../data/train, val: {absolute}}}
        teacher: {{checkpoint: ../runs/t/weights/best.pt}}
        output: ../runs/s
        """,
    )
    specs = []
    for cwd in (tmp_path, tmp_path / "configs", tmp_path / "runs"):
        monkeypatch.chdir(cwd)
        specs.append(load_spec(path.relative_to(tmp_path) if cwd == tmp_path else path))
    assert specs[0] == specs[1] == specs[2]
    spec = specs[0]
    assert spec.dataset.train == str(tmp_path / "data" / "train")
    assert spec.dataset.val == str(absolute)  # absolute paths stay as they are
    assert spec.teacher is not None and spec.teacher.checkpoint == str(tmp_path / "runs/t/weights/best.pt")
    assert spec.output_dir() == tmp_path / "runs" / "s"
    # without output: runs/<name> in the current directory (like --output, a command-line path)
    path.write_text("name: s\ndataset: {train: ../data/train}\n")
    assert load_spec(path).output_dir() == Path("runs/s")
    # a spec given as data (the HTTP API) keeps its paths as given
    assert parse_spec({"name": "s", "dataset": {"train": "data/x"}}).dataset.train == "data/x"


def test_a_missing_input_names_field_path_resolved_path_and_line(tmp_path: Path) -> None:
    path = _spec_file(
        tmp_path / "configs",
        """\
        name: s
        # the data
        dataset:
          train: data/x
        """,
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    resolved = tmp_path / "configs" / "data" / "x"
    wanted = f"{path}:4: dataset.train: data/x (resolved to {resolved}): folder does not exist"
    assert str(caught.value) == wanted
    (tmp_path / "configs" / "data" / "x").mkdir(parents=True)
    path.write_text("name: s\nkind: distill\ndataset: {train: data/x}\nteacher: {checkpoint: /no/t.pt}\n")
    with pytest.raises(SpecError, match=r"yaml:4: teacher\.checkpoint: /no/t\.pt: file does not exist$"):
        load_spec(path)
    assert load_spec(path, check_paths=False).teacher is not None  # only validated


def test_relative_spec_paths_undo_the_resolution(tmp_path: Path) -> None:
    data = {
        "name": "s",
        "dataset": {"train": "data/train", "val": "../shared/val", "classes": "a,b"},
        "teacher": {"checkpoint": "runs/t/weights/last.pt"},
        "output": "runs/s",
        "hparams": {"epochs": 3},
    }
    resolved = resolve_spec_paths(data, tmp_path)
    assert resolved["dataset"]["train"] == str(tmp_path / "data" / "train")
    assert resolved["dataset"]["val"] == str(tmp_path.parent / "shared" / "val")
    assert resolved["hparams"] == {"epochs": 3} and data["dataset"]["train"] == "data/train"  # a copy
    assert relative_spec_paths(resolved, tmp_path) == data


def test_with_overrides_merges_sections_and_validates_naming_the_source() -> None:
    spec = parse_spec(
        {"name": "a", "dataset": {"train": "tr", "classes": "a,b"}, "hparams": {"epochs": 5, "batch": 4}}
    )
    assert spec.with_overrides({}) is spec
    new = spec.with_overrides({"hparams": {"epochs": 3}, "output": "x"}, source="here")
    assert (new.hparams.epochs, new.hparams.batch, new.output, new.name) == (3, 4, "x", "a")
    assert (spec.hparams.epochs, spec.output) == (5, None)  # a copy
    assert new.with_overrides({"dataset": {"val": "va"}}).dataset.train == "tr"
    with pytest.raises(SpecError, match=r"^here with overrides: hparams\.epochs: "):
        spec.with_overrides({"hparams": {"epochs": 0}}, source="here with overrides")
    with pytest.raises(SpecError, match=r"^spec: \(root\): a distill job needs teacher\.checkpoint"):
        spec.with_overrides({"kind": "distill"})


def test_deep_merge_and_spec_overrides() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": {"e": 2}}
    merged = deep_merge(base, {"a": {"b": 2}, "d": None})
    assert merged == {"a": {"b": 2, "c": [1]}, "d": None} and base["a"]["b"] == 1
    assert spec_overrides({}) == {}
    assert spec_overrides({"epochs": 2}, Path("o")) == {"hparams": {"epochs": 2}, "output": "o"}
