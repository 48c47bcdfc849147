"""Find where a classifier's CAM lives: the feature map feeding global average pooling, and the
affine layer that turns pooled features into logits.

The model is traced with torch.fx (torchvision's NodePathTracer, so nodes carry the dotted
module names users see in `print(model)`; timm's own leaf modules stay whole). Two head shapes are
CAM-exact:
  features → GAP → [Flatten/Dropout/Identity] → Linear → logits         (ResNet, GoogLeNet, ...)
  features → [Dropout] → 1×1 Conv → [ReLU] → GAP → [Flatten] → logits    (SqueezeNet)
Other heads after GAP get Grad-CAM when each layer has a closed-form derivative (gradcam.py):
Linear, a 1×1 Conv on the pooled map (timm's conv_head), eval-mode BatchNorm, element-wise
activations, LayerNorm, Dropout, reshapes. Anything else is refused with its name.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import NodePathTracer

from edge_cam.errors import EdgeCamError, first_line

from .gradcam import first_unsupported, head_chain, target_name

_PASS_MODULES = (nn.Flatten, nn.Dropout, nn.Identity)
_PASS_FUNCS = {torch.flatten, F.dropout, torch.squeeze, torch.reshape}
_PASS_METHODS = {"flatten", "view", "reshape", "squeeze", "contiguous"}
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6)
_ELEMENTWISE_FUNCS = {F.relu, torch.relu, F.relu6}
_ELEMENTWISE_METHODS = {"relu"}


@dataclass
class CamLayers:
    """Where the CAM comes from in one traced model."""
    graph: fx.GraphModule  # the traced model, eval mode
    feature_node: fx.Node  # the 4-D map F whose channels the CAM weighs
    logits_node: fx.Node  # the model's output
    classifier: str  # dotted name of the Linear / 1×1 Conv holding W
    weight: torch.Tensor | None  # W, (num_classes, channels); None for Grad-CAM
    hook_module: str  # outermost module whose output is F, or the one before `post_ops`
    post_ops: list[fx.Node] = field(default_factory=list)  # elementwise ops from hook_module to F
    gap: fx.Node | None = None  # Grad-CAM only: the pooling node, and the head after it
    head: list[fx.Node] | None = None

    @property
    def method(self) -> str:
        return "cam" if self.head is None else "gradcam"

    @property
    def feature_layer(self) -> str:
        return self.hook_module + "".join(f"+{_describe(n)}" for n in self.post_ops)


def _tracer() -> NodePathTracer:
    # timm declares the modules and functions fx must not enter (Conv2dSame pads by the input's
    # size, which a symbolic trace cannot branch on); it is in use only if it is imported.
    timm_layers = sys.modules.get("timm.layers")
    if timm_layers is None:
        return NodePathTracer()
    return NodePathTracer(leaf_modules=timm_layers.get_notrace_modules(),
                          autowrap_functions=timm_layers.get_notrace_functions())


def trace(model: nn.Module) -> tuple[fx.GraphModule, dict[fx.Node, str]]:
    tracer = _tracer()
    try:
        graph = tracer.trace(model.eval())
    except Exception as e:
        raise EdgeCamError(
            f"torch.fx cannot trace {type(model).__name__} ({first_line(e, 160)}); make its "
            "forward free of data-dependent Python control flow.") from None
    return fx.GraphModule(tracer.root, graph, type(model).__name__), tracer.node_to_qualname


def _describe(node: fx.Node) -> str:
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(target_name(node)) if node.op == "call_module" else None


def _is(gm, node, modules, funcs, methods) -> bool:
    m = _module(gm, node)
    if m is not None:
        return isinstance(m, modules)
    if node.op == "call_function":
        return node.target in funcs
    return node.op == "call_method" and node.target in methods


def _is_pass(gm, node) -> bool:
    return _is(gm, node, _PASS_MODULES, _PASS_FUNCS, _PASS_METHODS)


def _is_elementwise(gm, node) -> bool:
    return _is(gm, node, _ELEMENTWISE_MODULES, _ELEMENTWISE_FUNCS, _ELEMENTWISE_METHODS)


def _pool_kind(gm, node) -> str | None:
    """'global' for global average pooling over H, W; 'local' for another average pool."""
    m = _module(gm, node)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = m.output_size
        return "global" if size in (1, (1, 1), [1, 1]) else "local"
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return "global" if size in (1, (1, 1), [1, 1]) else "local"
    if (node.op == "call_method" and node.target == "mean") or (
            node.op == "call_function" and node.target is torch.mean):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, (list, tuple)) and sorted(int(d) % 4 if d < 0 else d for d in dims) == [2, 3]:
            return "global"
    return None


def _enclosing_module(model: nn.Module, names, node: fx.Node) -> tuple[str, str]:
    """The innermost named module a node belongs to, and its type, for error messages."""
    parts = _name(names, node).split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        try:
            return prefix, type(model.get_submodule(prefix)).__name__
        except AttributeError:
            continue
    return _name(names, node), _describe(node)


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _output_value(gm: fx.GraphModule) -> fx.Node:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    value = out.args[0]
    if not isinstance(value, fx.Node):
        raise EdgeCamError("the model returns several values; CAM export needs a model whose "
                           "forward returns one logits tensor (wrap it to return only the logits).")
    return value


def _name(names: dict[fx.Node, str], node: fx.Node) -> str:
    return names.get(node, node.name)


def _owner(gm: fx.GraphModule, names: dict[fx.Node, str], node: fx.Node) -> str | None:
    """The outermost module whose single output is `node` (e.g. `layer4` for ResNet)."""
    qual = _name(names, node)
    parts = qual.split(".")
    candidates = [".".join(parts[:i]) for i in range(1, len(parts))]
    if node.op == "call_module":
        candidates.append(target_name(node))
    nodes = list(gm.graph.nodes)
    for prefix in candidates:
        inside = {n for n in nodes if _name(names, n).startswith(prefix + ".") or
                  (n.op == "call_module" and (n.target == prefix or n.target.startswith(prefix + ".")))}
        escaping = {n for n in inside if any(u not in inside for u in n.users)}
        if escaping == {node}:
            return prefix
    return None


def _hook_point(gm, names, feature: fx.Node) -> tuple[str, list[fx.Node]]:
    """A module to hook for the eager reference, plus the elementwise ops between it and F."""
    post: list[fx.Node] = []
    node = feature
    while True:
        owner = _owner(gm, names, node)
        if owner is not None:
            return owner, post[::-1]
        if not _is_elementwise(gm, node) or len(node.all_input_nodes) != 1:
            raise EdgeCamError(
                f"the feature map {_name(names, feature)!r} is not the output of a module, so no "
                "forward hook can reach it; pass --feature-layer with a module name.")
        post.append(node)
        node = node.all_input_nodes[0]


def find_cam_layers(model: nn.Module, feature_layer: str | None = None,
                    classifier: str | None = None, gradcam: bool = True) -> CamLayers:
    """Locate F and W in `model`, or say plainly why this model has no exact CAM."""
    gm, names = trace(model)
    logits = _output_value(gm)
    weight: torch.Tensor | None
    by_name: dict[str, fx.Node] = {}
    for n in gm.graph.nodes:
        by_name.setdefault(_name(names, n), n)
        by_name.setdefault(n.name, n)

    if feature_layer is not None:
        if feature_layer not in by_name:
            raise EdgeCamError(f"--feature-layer {feature_layer!r} is not a layer of this model; "
                               "`edge-cam export --list-layers` prints the names.")
        feature = by_name[feature_layer]
        if classifier is None:
            raise EdgeCamError("--feature-layer needs --classifier: name the Linear or 1x1 Conv "
                               "whose weights turn these features into logits.")
        weight = _affine_weight(gm, classifier)
    else:
        feature, weight, classifier, gap, head = _auto(model, gm, names, logits, classifier, gradcam)
        if head is not None:
            hook, post = _hook_point(gm, names, feature)
            return CamLayers(gm, feature, logits, "", None, hook, post, gap, head)
    hook, post = _hook_point(gm, names, feature)
    return CamLayers(gm, feature, logits, classifier, weight, hook, post)


def _affine_weight(gm: fx.GraphModule, name: str) -> torch.Tensor:
    try:
        m = gm.get_submodule(name)
    except AttributeError:
        raise EdgeCamError(f"--classifier {name!r} is not a module of this model.") from None
    if isinstance(m, nn.Linear):
        return m.weight.detach()
    if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
        return m.weight.detach()[:, :, 0, 0]
    raise EdgeCamError(f"--classifier {name!r} is a {type(m).__name__}; it must be a Linear or a "
                       "1x1 Conv2d.")


def _auto(model: nn.Module, gm: fx.GraphModule, names: dict[fx.Node, str], logits: fx.Node,
          classifier_override: str | None, gradcam: bool
          ) -> tuple[fx.Node, torch.Tensor | None, str, fx.Node | None, list[fx.Node] | None]:
    """(F, W, W's module name, None, None) for CAM, or (F, None, "", the pooling, the head) for Grad-CAM."""
    pools = [n for n in gm.graph.nodes if _pool_kind(gm, n)]
    gaps = [n for n in pools if _pool_kind(gm, n) == "global"]
    if not gaps:
        if pools:
            raise EdgeCamError(
                f"this model pools to a fixed grid ({_name(names, pools[-1])}), not globally, before "
                "its classifier (as VGG and AlexNet do), so it has no class activation map.")
        raise EdgeCamError("this model has no global average pooling before its classifier, so it has "
                           "no class activation map.")
    gap = gaps[-1]

    # Downstream of GAP, every layer up to the logits must be pass-through, except one Linear.
    chain: list[fx.Node] = []
    node = gap
    while node is not logits:
        user = _single_user(node)
        if user is None:
            raise EdgeCamError(f"the pooled features at {_name(names, gap)!r} feed several layers, so "
                               "the head is not one affine map and plain CAM is not exact for it.")
        node = user
        chain.append(node)
    layers = [n for n in chain if not _is_pass(gm, n)]
    if len(layers) == 1 and isinstance(_module(gm, layers[0]), nn.Linear):
        name = classifier_override or target_name(layers[0])
        return gap.all_input_nodes[0], _affine_weight(gm, name), name, None, None
    if not layers:
        # SqueezeNet: pooling gives the logits; the classifier is a 1x1 conv before it.
        conv = gap.all_input_nodes[0]
        while _is_elementwise(gm, conv):
            conv = conv.all_input_nodes[0]
        m = _module(gm, conv)
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
            feature = conv.all_input_nodes[0]
            while _is_pass(gm, feature):
                feature = feature.all_input_nodes[0]
            name = classifier_override or target_name(conv)
            return feature, _affine_weight(gm, name), name, None, None
        raise EdgeCamError("this model's global average pooling gives the logits directly, with no "
                           "1x1 Conv classifier before it, so there are no class weights for a CAM.")
    head = head_chain(gm, gap, logits) if gradcam else None
    if head is not None:
        return gap.all_input_nodes[0], None, "", gap, head
    blocker = first_unsupported(gm, gap, logits) or layers[0]
    where, what = _enclosing_module(model, names, blocker)
    raise EdgeCamError(
        f"this model's head is not affine after global average pooling (found {what} at "
        f"{where!r}) and has no closed-form gradient here, so neither CAM nor Grad-CAM can be folded "
        "in; supported heads are Linear layers, 1x1 Convs on the pooled map, BatchNorm, element-wise "
        "activations, LayerNorm and Dropout after global average pooling, or a 1x1 Conv before it.")
