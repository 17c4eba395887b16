"""`--format pt2`: a torch.export program with the weights and a dynamic batch dimension."""

from __future__ import annotations

from archcompiler.util import atomic_output

MAX_BATCH = 4096


def export_program(model, batch: int = 2):
    import torch

    model = model.eval()
    c, h, w = model.pretrained_cfg["input_size"]
    example = torch.randn(batch, c, h, w)
    dim = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes={"x": {0: dim}})


def export_pt2(model, path: str) -> str:
    """Export (eval mode) and save atomically; load with torch.export.load(path).module()."""
    import torch

    program = export_program(model)
    with atomic_output(path, suffix=".pt2") as tmp:
        torch.export.save(program, tmp)
    return path
