"""Shared test helpers: randomised weights that make numerical errors visible.

timm's default initialisation leaves BN trivial and makes logits tiny or huge, which
hides mistakes; the issue prescribes: conv/fc weights N(0, 1/fan_in), biases N(0, 1),
BN gamma U[0.5, 1.5], beta N(0, 1), running mean N(0, 0.1), running var U[0.5, 1.5].
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.yaml"))
TIMM_SPECS = ["inception_v4", "inception_resnet_v2", "inception_v3"]


def randomized_state(entries, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights for archcompiler.weights.state_entries(...) (our names)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = {}
    for e in entries:
        if e.op == "batchnorm":
            value = {
                "weight": lambda s: rng.uniform(0.5, 1.5, s),
                "bias": lambda s: rng.normal(0.0, 1.0, s),
                "running_mean": lambda s: rng.normal(0.0, 0.1, s),
                "running_var": lambda s: rng.uniform(0.5, 1.5, s),
            }[e.param](e.shape)
        elif e.param == "weight":
            value = rng.normal(0.0, 1.0 / math.sqrt(math.prod(e.shape[1:])), e.shape)
        else:
            value = rng.normal(0.0, 1.0, e.shape)
        out[e.name] = value.astype(np.float32)
    return out


def spec_state(spec, seed: int = 0, **lower_options):
    """(analysis-like graph, shapes, randomised state) for a loaded spec."""
    from archcompiler.ir.lower import LowerOptions, lower
    from archcompiler.passes.shapes import infer_shapes
    from archcompiler.weights import state_entries

    graph = lower(spec, LowerOptions(**lower_options))
    shapes, problems = infer_shapes(graph)
    assert not problems
    return graph, shapes, randomized_state(state_entries(graph, shapes), seed)


def python_without(*modules: str) -> list[str]:
    """argv prefix for a Python subprocess in which importing `modules` fails."""
    blocker = (
        "import sys\n"
        "class _Block:\n"
        f"    names = {modules!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.names:\n"
        "            raise ImportError(f'{name} is hidden for this test')\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return [sys.executable, "-c", blocker + "import runpy, sys; sys.argv = sys.argv[1:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__')"]


def randomize_reference(model, seed: int) -> None:
    """The same randomisation applied to a reference (timm / torchvision) torch model,
    module by module (its names are never involved)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = math.prod(mod.weight.shape[1:])
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / fan_in ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
