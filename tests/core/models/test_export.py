"""The fused detector exports to ONNX and onnxruntime reproduces torch's outputs."""

from __future__ import annotations

import io

import pytest
import torch
from torch import Tensor, nn

from daik_core.models import Detector
from daik_core.presets import build_detector
from tests.core.models.helpers import randomize_

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class _Logits(nn.Module):
    """The detector's logits as a tuple (exporters want tensors, not a dataclass)."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(images)
        return out.cls_logits, out.box_logits, out.angle_logits


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_fused_model_exports_to_onnx() -> None:
    torch.manual_seed(0)
    model = build_detector("n", 5)
    randomize_(model)
    wrapper = _Logits(model.eval().fuse()).eval()
    x = torch.randn(1, 3, 64, 96)
    buf = io.BytesIO()
    torch.onnx.export(
        wrapper,
        (x,),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=["cls", "box", "angle"],
    )
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()))
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = wrapper(x)
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(torch.from_numpy(g), w, rtol=1e-4, atol=1e-4)
