"""Grad-CAM folded into the graph, for heads that are not affine after global average pooling.

Grad-CAM weighs the feature maps by α = ∂y_c/∂g, g = GAP(F) (its spatial mean of ∂y_c/∂F is that,
over h·w). For a head of Linear layers, 1×1 Convs on the pooled map, eval-mode BatchNorm,
element-wise activations, LayerNorm, Dropout and reshapes the derivative has a closed form in the
head's own forward values, so the graph computes it with ordinary ops — no autograd at run time.
For an affine head it is exactly W[c]: CAM.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

# d/dz of each supported activation, as a function of its input z.
_DERIVATIVES: dict[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: lambda z: (z > 0).to(z.dtype),
    nn.ReLU6: lambda z: ((z > 0) & (z < 6)).to(z.dtype),
    nn.Hardswish: lambda z: torch.where(z < -3, torch.zeros_like(z), torch.where(z > 3, torch.ones_like(z), (2 * z + 3) / 6)),
    nn.Hardsigmoid: lambda z: ((z > -3) & (z < 3)).to(z.dtype) / 6,
    nn.SiLU: lambda z: torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))),
    nn.Sigmoid: lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    nn.Tanh: lambda z: 1 - torch.tanh(z) ** 2,
    nn.GELU: lambda z: 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
}
# The same activations out of place: the replay must not overwrite the inputs it differentiates at
# (torchvision and timm build them with inplace=True).
_OUT_OF_PLACE: dict[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: F.relu, nn.ReLU6: F.relu6, nn.Hardswish: F.hardswish, nn.Hardsigmoid: F.hardsigmoid,
    nn.SiLU: F.silu, nn.Sigmoid: torch.sigmoid, nn.Tanh: torch.tanh, nn.GELU: F.gelu}
_FUNCTIONS: dict[Callable[..., Any], type[nn.Module]] = {
    F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.hardswish: nn.Hardswish,
    F.hardsigmoid: nn.Hardsigmoid, F.silu: nn.SiLU, torch.sigmoid: nn.Sigmoid, torch.tanh: nn.Tanh, F.gelu: nn.GELU}
_SHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze}
_SHAPE_METHODS = {"flatten", "view", "reshape", "squeeze"}
_IDENTITY_METHODS = {"contiguous"}
# Kinds that keep a pooled (B, C, 1, 1) map as it is, so a 1×1 Conv after them still sees 1×1.
_KEEP_SPATIAL = {"identity", "activation", "batchnorm", "conv1x1"}


def target_name(node: fx.Node) -> str:
    """The target of a call_module, call_method or get_attr node: fx gives these a qualified name
    (only a call_function node's target is the function itself)."""
    assert isinstance(node.target, str), f"{node.op} node {node.name} without a name target"
    return node.target


def _activation(gm: fx.GraphModule, node: fx.Node) -> type[nn.Module] | None:
    """The activation a head node computes. Exact types only: a subclass may override forward."""
    if node.op == "call_module":
        m = gm.get_submodule(target_name(node))
        if type(m) in _DERIVATIVES and getattr(m, "approximate", "none") == "none":
            return type(m)
        return None
    if node.op == "call_function" and node.target in _FUNCTIONS:
        return None if node.kwargs.get("approximate", "none") != "none" else _FUNCTIONS[node.target]
    return None


def _is_conv1x1(m: nn.Module) -> bool:
    """A 1×1 Conv2d without padding: on a 1×1 map, a Linear over the channels."""
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
            and m.padding in ((0, 0), "valid", "same"))


def _batchnorm_args(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str | None, float] | None:
    """Attribute paths of (running_var, weight) and eps of a BatchNorm that uses its running
    statistics (eval mode), else None."""
    if node.op == "call_module":
        m = gm.get_submodule(target_name(node))
        if not (type(m) is nn.BatchNorm1d or type(m) is nn.BatchNorm2d) or m.running_var is None:
            return None
        return f"{node.target}.running_var", f"{node.target}.weight" if m.weight is not None else None, m.eps
    if node.op == "call_function" and node.target is F.batch_norm:
        names = ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"]
        a = {**dict(zip(names, node.args)), **node.kwargs}
        var, weight, eps = a.get("running_var"), a.get("weight"), a.get("eps", 1e-5)
        if a.get("training", False) or not isinstance(var, fx.Node) or var.op != "get_attr":
            return None
        if weight is not None and not (isinstance(weight, fx.Node) and weight.op == "get_attr"):
            return None
        if not isinstance(eps, (int, float)):  # computed in the graph: the replay needs a constant
            return None
        return target_name(var), target_name(weight) if weight is not None else None, eps
    return None


def _kind(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """How the backward treats a head node, or None if it has no closed form here."""
    if _activation(gm, node) is not None:
        return "activation"
    if _batchnorm_args(gm, node) is not None:
        return "batchnorm"
    if node.op == "call_module":
        m = gm.get_submodule(target_name(node))
        if isinstance(m, nn.Linear):
            return "linear"
        if _is_conv1x1(m):
            return "conv1x1"
        if isinstance(m, nn.LayerNorm):
            return "layernorm"
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return "identity"
        if isinstance(m, nn.Flatten):
            return "shape"
        return None
    if node.op == "call_function":
        if node.target is F.layer_norm:
            return "layernorm"
        if node.target is F.linear:
            return "linear"
        if node.target is F.dropout:
            return "identity"
        if node.target in _SHAPE_FUNCS:
            return "shape"
        return None
    if node.op == "call_method":
        if node.target == "permute":
            return "permute"
        if node.target in _IDENTITY_METHODS:
            return "identity"
        return "shape" if node.target in _SHAPE_METHODS else None
    return None


def _keeps_dims(gap: fx.Node) -> bool:
    """Whether the pooling gives (B, C, 1, 1), as adaptive pooling and mean(keepdim=True) do."""
    if gap.op == "call_method" or gap.target is torch.mean:
        return bool(gap.args[2] if len(gap.args) > 2 else gap.kwargs.get("keepdim", False))
    return True


def _walk(gm: fx.GraphModule, gap: fx.Node, logits: fx.Node) -> tuple[list[fx.Node], fx.Node | None]:
    """The head nodes from the pooling's output towards the logits, and the first one without a
    closed form here (one that branches, takes a second data input or is unsupported), if any."""
    chain: list[fx.Node] = []
    node = gap
    spatial = _keeps_dims(gap)  # still the pooled (B, C, 1, 1) map
    while node is not logits:
        users = [u for u in node.users if u.op != "output"]
        if len(users) != 1:
            return chain, node
        node = users[0]
        data = [a for a in node.all_input_nodes if a.op != "get_attr"]
        kind = _kind(gm, node)
        if data != [chain[-1] if chain else gap] or kind is None or (kind == "conv1x1" and not spatial):
            return chain, node
        spatial = spatial and kind in _KEEP_SPATIAL
        chain.append(node)
    return chain, None


def head_chain(gm: fx.GraphModule, gap: fx.Node, logits: fx.Node) -> list[fx.Node] | None:
    """The nodes from the pooling's output to the logits, if each has one data input from the
    chain and a closed-form derivative; None otherwise."""
    chain, blocker = _walk(gm, gap, logits)
    return chain if blocker is None else None


def first_unsupported(gm: fx.GraphModule, gap: fx.Node, logits: fx.Node) -> fx.Node | None:
    """The node after the pooling that stops head_chain, to name it in an error."""
    return _walk(gm, gap, logits)[1]


@dataclass(frozen=True)
class _Step:
    """One head node, classified once, eagerly: tracers (torch.export's among them) may wrap
    submodules in proxy subclasses while they run the forward, where type lookups would fail."""
    node: fx.Node
    kind: str | None
    activation: type[nn.Module] | None
    batchnorm: tuple[str, str | None, float] | None


class GradHead(nn.Module):
    """F → logits, and α = ∂logits[class_ids]/∂g (g = GAP(F)), by replaying the traced head."""

    def __init__(self, gm: fx.GraphModule, feature: fx.Node, gap: fx.Node, chain: list[fx.Node]):
        super().__init__()
        self.gm, self.feature, self.gap = gm, feature, gap
        self.steps = [_Step(n, _kind(gm, n), _activation(gm, n), _batchnorm_args(gm, n)) for n in chain]
        unknown = [s.node.name for s in self.steps if s.kind is None]
        if unknown:
            raise ValueError(f"head nodes without a closed-form derivative: {unknown}")

    def _attr(self, path: str) -> torch.Tensor:
        """The parameter or buffer at `path` (a get_attr node's target)."""
        obj: Any = self.gm
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj

    def _value(self, a: Any, env: dict[fx.Node, Any]) -> Any:
        if isinstance(a, fx.Node):
            return self._attr(target_name(a)) if a.op == "get_attr" else env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self._value(x, env) for x in a)
        return a

    def _run(self, node: fx.Node, env: dict[fx.Node, Any], step: _Step | None = None) -> Any:
        args = [self._value(a, env) for a in node.args]
        kwargs = {k: self._value(v, env) for k, v in node.kwargs.items()}
        if step is not None and step.kind == "identity":  # eval mode: Dropout, Identity (some in place)
            return args[0]
        if step is not None and step.activation is not None:
            return _OUT_OF_PLACE[step.activation](args[0])
        if node.op == "call_module":
            return self.gm.get_submodule(target_name(node))(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], target_name(node))(*args[1:], **kwargs)
        assert callable(node.target), f"{node.op} node {node.name} with a target that is not a function"
        return node.target(*args, **kwargs)

    def forward(self, feat: torch.Tensor, top_k: int, class_query: torch.Tensor | None = None):
        """F → (logits, top-K class ids, α of shape (B, K, C)), and with a `class_query` a fourth
        item, the α of those classes (B, Q, C). The queried rows are pulled back with the top-K's
        in one pass: the backward is the same for a one-hot row of any class."""
        env: dict[fx.Node, Any] = {self.feature: feat}
        env[self.gap] = self._run(self.gap, env)
        inputs = []
        for step in self.steps:
            inputs.append(env[[a for a in step.node.all_input_nodes if a.op != "get_attr"][0]])
            env[step.node] = self._run(step.node, env, step)
        logits = env[self.steps[-1].node]
        class_ids = torch.topk(logits, top_k, dim=1).indices
        wanted = class_ids
        if class_query is not None:
            wanted = torch.cat([class_ids, class_query.unsqueeze(0).expand(class_ids.shape[0], -1)], dim=1)
        # v: (B, K + Q, ...) — one row per chosen class, pulled back through the head.
        v = F.one_hot(wanted, logits.shape[1]).to(logits.dtype)
        for step, x in zip(reversed(self.steps), reversed(inputs)):
            v = self._back(step, v, x, env)
        alpha = v.reshape(v.shape[0], v.shape[1], -1)
        if class_query is None:
            return logits, class_ids, alpha
        return logits, class_ids, alpha[:, :top_k], alpha[:, top_k:]

    def _back(self, step: _Step, v: torch.Tensor, x: torch.Tensor, env: dict[fx.Node, Any]) -> torch.Tensor:
        node, kind = step.node, step.kind
        if kind == "linear":
            w = self._attr(f"{target_name(node)}.weight") if node.op == "call_module" else self._value(node.args[1], env)
            return torch.matmul(v, w)
        if kind == "conv1x1":  # on a 1×1 map: a Linear over the channels
            w = self._attr(f"{target_name(node)}.weight")
            return torch.matmul(v.flatten(2), w.flatten(1)).reshape(v.shape[0], v.shape[1], *x.shape[1:])
        if kind == "activation":
            assert step.activation is not None  # _kind says "activation" exactly when there is one
            return v * _DERIVATIVES[step.activation](x).unsqueeze(1)
        if kind == "batchnorm":  # running statistics: a per-channel scale γ/√(σ²+ε)
            assert step.batchnorm is not None  # _kind says "batchnorm" exactly when there are its arguments
            var, gamma, eps = step.batchnorm
            scale = torch.rsqrt(self._attr(var) + eps)
            scale = scale * self._attr(gamma) if gamma is not None else scale
            return v * scale.reshape(1, 1, -1, *[1] * (x.dim() - 2))
        if kind == "identity":
            return v
        if kind == "permute":
            dims = node.args[1:] if len(node.args) > 2 else node.args[1]
            assert isinstance(dims, (list, tuple)), f"permute node {node.name} with dims {dims!r}"
            inverse = [list(dims).index(i) for i in range(len(dims))]
            return v.permute(0, 1, *[d + 1 for d in inverse[1:]])
        if kind == "layernorm":
            return self._back_layernorm(node, v, x, env)
        return v.reshape(v.shape[0], v.shape[1], *x.shape[1:])  # "shape": undo the reshape

    def _back_layernorm(self, node: fx.Node, v: torch.Tensor, x: torch.Tensor, env: dict[fx.Node, Any]) -> torch.Tensor:
        gamma: torch.Tensor | None
        if node.op == "call_module":
            # cast, not isinstance: the tracer running this forward may have wrapped the module (see _Step)
            m = cast(nn.LayerNorm, self.gm.get_submodule(target_name(node)))
            ndim, gamma, eps = len(m.normalized_shape), m.weight, m.eps
        else:
            shape = node.args[1]
            gamma = self._value(node.args[2] if len(node.args) > 2 else node.kwargs.get("weight"), env)
            eps_arg = node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5)
            # Constants: a computed shape or eps would be a second data input, which _walk refuses.
            assert isinstance(shape, (list, tuple)) and isinstance(eps_arg, (int, float)), node.name
            ndim, eps = len(shape), eps_arg
        dims = tuple(range(-ndim, 0))
        xe = x.unsqueeze(1)
        mu = xe.mean(dims, keepdim=True)
        sigma = torch.sqrt(((xe - mu) ** 2).mean(dims, keepdim=True) + eps)
        xhat = (xe - mu) / sigma
        dy = v * gamma if gamma is not None else v
        return (dy - dy.mean(dims, keepdim=True) - xhat * (dy * xhat).mean(dims, keepdim=True)) / sigma
