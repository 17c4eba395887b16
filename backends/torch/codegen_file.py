"""The generated file around the classes: header, constants, helpers, the network class."""

from __future__ import annotations

from archcompiler import __version__
from archcompiler.network import spec_reference

from .codegen_scope import class_name, indent


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(" ".join(text.split()), width)


def _timm_interface(net, trunk_calls, head_is_sequential: bool) -> str:
    """timm's model interface on the generated class (forward_features, forward_head,
    get_classifier, reset_classifier; num_features and feature_info are set in __init__)."""
    from archcompiler.ir.graph import feature_points

    g = net.graph
    head = next((n for n in reversed(g.nodes) if n.stage == "head"), None)
    linear = head is not None and head.op == "linear" and head_is_sequential
    aux = [name for name, _ in g.aux_after]
    src = ("\n    def forward_features(self, x):\n"
           '        """The output of the trunk\'s last stage (before the head)."""\n'
           + "".join(f"        {c}\n" for c in trunk_calls) + "        return x\n"
           "\n    def forward_head(self, x, pre_logits: bool = False):\n"
           '        """The head; with pre_logits, everything before its last linear."""\n')
    src += ("        return self.head[:-1](x) if pre_logits else self.head(x)\n" if linear
            else "        return self.head(x)\n")
    if linear:
        resets = "".join(
            f"        if self.{a} is not None:\n"
            f"            self.{a}[-1] = nn.Linear(self.{a}[-1].in_features, num_classes) "
            "if num_classes else nn.Identity()\n" for a in aux)
        src += ("\n    def get_classifier(self):\n        return self.head[-1]\n"
                "\n    def reset_classifier(self, num_classes: int, global_pool=None):\n"
                '        """A fresh classifier of num_classes outputs (nn.Identity for 0); the aux\n'
                '        heads\' last linears likewise."""\n'
                f"        self.head[-1] = nn.Linear({g.by_name[head.inputs[0]] and net.shapes[head.inputs[0]][0]}, num_classes) "
                "if num_classes else nn.Identity()\n" + resets
                + "        self.num_classes = num_classes\n"
                "        self.pretrained_cfg = dict(self.pretrained_cfg, num_classes=num_classes)\n")
    points = feature_points(g, net.shapes)
    info = [{"num_chs": net.shapes[st.output][0], "reduction": r, "module": st.name} for st, r in points]
    trunk = [st for st in g.stages if st.kind == "trunk"]
    nfeat = net.shapes[trunk[-1].output][0] if trunk else g.input_shape[0]
    return src, nfeat, info


def assemble(spec, net, gen, inits, calls, trunk_calls, helpers, constants, classes,
             weights_file, head_is_sequential: bool = True) -> str:
    g = net.graph
    model_cls = class_name(spec.name)
    if model_cls in gen.classes:
        model_cls += "Net"
    pp = spec.preprocess
    cfg = {
        "architecture": spec.name, "title": spec.title, "source": spec.source,
        "spec_file": spec_reference(spec), "input_size": tuple(spec.input_shape),
        "mean": tuple(pp.mean), "std": tuple(pp.std), "crop_pct": pp.crop_pct,
        "interpolation": pp.interpolation, "num_classes": classes,
    }
    cfg_src = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in cfg.items()) + "}"
    has_aux = bool(g.aux_after)
    sig = "self, num_classes: int = NUM_CLASSES"
    if has_aux:
        sig += f", aux_logits: bool = {bool(net.aux_default)}"
    fwd = "".join(f"        {c}\n" for c in calls)
    if has_aux:
        order = ", ".join(f"aux[{name!r}]" for name, _ in g.aux_after)
        fwd = "        aux = {}\n" + fwd
        ret = ("        x = self.head(x)\n"
               f"        return (x, {order}) if aux else x\n")
    else:
        ret = "        return self.head(x)\n"
    title = spec.title or spec.name
    timm_src, nfeat, info = _timm_interface(net, trunk_calls, head_is_sequential)
    weights_src = ""
    imports = "IMPORTS_PLACEHOLDER"
    if weights_file:
        pass
        weights_src = (
            f"\n    @classmethod\n    def pretrained(cls, path=None, **kwargs):\n"
            f'        """The model with the weights written beside this file ({weights_file})."""\n'
            f"        model = cls(**kwargs)\n"
            f"        here = os.path.dirname(os.path.abspath(__file__))\n"
            f"        model.load_weights(path or os.path.join(here, {weights_file!r}))\n"
            f"        return model\n")
    doc = "".join(f"    {ln}\n" for ln in _wrap(f"Source: {spec.source}.", 88)) if spec.source else ""
    if spec.description:
        doc += "\n" + "".join(f"    {ln}\n" for ln in _wrap(spec.description, 88))
    model_src = (
        f"class {model_cls}(nn.Module):\n"
        f'    """{title}.\n\n{doc}    """\n\n    pretrained_cfg = PRETRAINED_CFG\n\n'
        f"    def __init__({sig}):\n        super().__init__()\n"
        + "\n".join(f"        {ln}" for ln in inits) + "\n"
        + "        self.pretrained_cfg = dict(PRETRAINED_CFG, num_classes=num_classes)\n"
        + f"        self.num_classes, self.num_features = num_classes, {nfeat}\n"
        + "        self.feature_info = [\n" + "".join(f"            {i!r},\n" for i in info) + "        ]\n\n"
        + f"    def forward(self, x):\n{fwd}{ret}" + timm_src
        + "\n    def load_weights(self, path):\n"
        '        """Load a .safetensors file in this module\'s naming (needs the safetensors package)."""\n'
        "        from safetensors.torch import load_file\n\n"
        "        missing, unexpected = self.load_state_dict(load_file(path), strict=False)\n"
        "        missing = [k for k in missing if not k.endswith('num_batches_tracked')]\n"
        "        if missing or unexpected:\n"
        "            raise ValueError(f'{path} does not match: missing {missing}, unexpected {unexpected}')\n"
        "        return self\n"
        + weights_src)
    params_src = "".join(f"{k.upper()} = {v!r}\n" for k, v in constants.items() if k != "classes")
    width_src = ""
    if spec.width is not None:
        width_src = (f"WIDTH = {spec.width!r}\n\n\ndef _scaled(channels):\n"
                     "    return max(1, int(channels * WIDTH + 0.5))\n")
    d = spec.defaults.conv
    header = (
        f'"""{spec.name}: {title}.\n\n'
        f"Generated by archcompiler {__version__} from {spec_reference(spec)}; it needs only torch.\n"
        "Submodule names follow the spec, so state_dicts match archcompiler.build(...).\n\n"
        f"    model = {model_cls}()\n"
        + (f"    model = {model_cls}.pretrained()   # weights from {weights_file}\n" if weights_file else "")
        + '"""\n\n' + imports + "\n"
        + (f"# Spec parameters\n{params_src}" if params_src else "")
        + f"NUM_CLASSES = {classes}\n"
        + f"EPS = {d.eps!r}  # batch norm epsilon\nMOMENTUM = {d.momentum!r}\n"
        + width_src
        + f"\nPRETRAINED_CFG = {cfg_src}\n")
    helper_src = "\n\n".join(h.strip("\n") + "\n" for h in helpers.values())
    blocks_src = "\n\n".join(src.rstrip("\n") + "\n" for src in gen.classes.values())
    parts = [header, helper_src, blocks_src, model_src]
    text = "\n\n".join(p.strip("\n") + "\n" for p in parts if p.strip())
    return text.replace("IMPORTS_PLACEHOLDER", _imports(text, weights_file))


def _imports(text: str, weights_file) -> str:
    """Only what the file uses (pyflakes-clean)."""
    import re

    lines = ["import os\n"] if weights_file else []
    if "OrderedDict(" in text:
        lines.append("from collections import OrderedDict\n")
    lines.append("\n")
    if re.search(r"\btorch\.[A-Za-z_]", text):
        lines.append("import torch\n")
    if re.search(r"\bF\.[A-Za-z_]", text):
        lines.append("import torch.nn.functional as F\n")
    lines.append("from torch import nn\n")
    return "".join(lines).lstrip("\n")
