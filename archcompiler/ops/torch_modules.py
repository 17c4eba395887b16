"""Small torch modules that IR ops need and torch lacks; made on first use, so that the
registry imports without torch. Module-level names (`__getattr__`), so they pickle.

Each class is written once, as source text: the generated .py embeds the same text
(IROp.source_helpers), and the torch backend executes it here.
"""

from __future__ import annotations

_CLASSES: dict = {}

PAD_SRC = '''
class PadConv2d(nn.Conv2d):
    """A convolution with explicit (top, bottom, left, right) zero padding."""

    def __init__(self, *args, pads=(0, 0, 0, 0), **kwargs):
        super().__init__(*args, **kwargs)
        self.pads = tuple(pads)

    def forward(self, x):
        t, b, l, r = self.pads
        return self._conv_forward(F.pad(x, (l, r, t, b)), self.weight, self.bias)
'''

SAME_SRC = '''
class Conv2dSame(nn.Conv2d):
    """TF's SAME padding for any stride, from the input size at run time (fx-traceable):
    pad = max((ceil(H/s) - 1)*s + d*(k-1) + 1 - H, 0), the odd pixel at the bottom/right."""

    def forward(self, x):
        ph = self._pad(x.shape[2], 0)
        pw = self._pad(x.shape[3], 1)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return self._conv_forward(x, self.weight, self.bias)

    def _pad(self, size, i):
        k, s, d = self.kernel_size[i], self.stride[i], self.dilation[i]
        span = d * (k - 1) + 1
        p = (-(-size // s) - 1) * s + span - size
        return p if span >= s else (p + abs(p)) // 2  # p >= 0 whenever span >= s
'''

LAYERNORM2D_SRC = '''
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an N x C x H x W map (ConvNeXt's LayerNorm2d)."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
'''

SCALE_SRC = '''
class LayerScale(nn.Module):
    """A learnable per-channel scale (layer scale): x * gamma, gamma of shape [C]."""

    def __init__(self, channels, init=1e-6, vector=False):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))
        self.shape = (1, -1) if vector else (1, -1, 1, 1)

    def forward(self, x):
        return x * self.gamma.view(self.shape)
'''

DROP_PATH_SRC = '''
class DropPath(nn.Module):
    """Stochastic depth: in training, zeroes a whole sample's branch with probability p and
    scales the kept ones by 1/(1-p); the identity in eval (and absent from ONNX)."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep
'''

SOURCES = {"PadConv2d": PAD_SRC, "Conv2dSame": SAME_SRC, "LayerNorm2d": LAYERNORM2D_SRC,
           "LayerScale": SCALE_SRC, "DropPath": DROP_PATH_SRC}


def helper_class(name: str):
    if name not in _CLASSES:
        import torch
        import torch.nn.functional as F
        from torch import nn

        namespace = {"torch": torch, "nn": nn, "F": F, "__name__": __name__}
        exec(compile(SOURCES[name], f"<archc helper {name}>", "exec"), namespace)  # noqa: S102
        cls = namespace[name]
        cls.__module__, cls.__qualname__ = __name__, name
        _CLASSES[name] = cls
    return _CLASSES[name]


def bias_add_class(nn=None):
    if "BiasAdd" not in _CLASSES:
        import torch
        from torch import nn

        class BiasAdd(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.bias = nn.Parameter(torch.zeros(channels))

            def forward(self, x):
                return x + self.bias.view(1, -1, 1, 1)

        BiasAdd.__module__, BiasAdd.__qualname__ = __name__, "BiasAdd"
        _CLASSES["BiasAdd"] = BiasAdd
    return _CLASSES["BiasAdd"]


def __getattr__(name):
    if name == "BiasAdd":
        return bias_add_class()
    if name in SOURCES:
        return helper_class(name)
    raise AttributeError(name)
