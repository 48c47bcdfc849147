"""Grad-CAM folded into the graph, for heads that are not affine after global average pooling.

Grad-CAM weighs the feature maps by α = ∂y_c/∂g, g = GAP(F) (its spatial mean of ∂y_c/∂F is that,
over h·w). For a head of Linear layers, element-wise activations, LayerNorm, Dropout and reshapes
the derivative has a closed form in the head's own forward values, so the graph computes it with
ordinary ops — no autograd at run time. For an affine head it is exactly W[c]: CAM.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import fx, nn


# d/dz of each supported activation, as a function of its input z.
_DERIVATIVES = {
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
# (torchvision builds them with inplace=True, and the dynamo exporter mis-orders such writes).
_OUT_OF_PLACE = {nn.ReLU: F.relu, nn.ReLU6: F.relu6, nn.Hardswish: F.hardswish, nn.Hardsigmoid: F.hardsigmoid,
                 nn.SiLU: F.silu, nn.Sigmoid: torch.sigmoid, nn.Tanh: torch.tanh, nn.GELU: F.gelu}
_FUNCTIONS = {F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu6: nn.ReLU6, F.hardswish: nn.Hardswish,
              F.hardsigmoid: nn.Hardsigmoid, F.silu: nn.SiLU, torch.sigmoid: nn.Sigmoid, torch.tanh: nn.Tanh,
              F.gelu: nn.GELU}
_SHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, F.dropout}
_SHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "contiguous"}


def _kind(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """How the backward treats a head node, or None if it has no closed form here."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, nn.LayerNorm):
            return "layernorm"
        if isinstance(m, (nn.Dropout, nn.Identity, nn.Flatten)):
            return "shape"
        if type(m) in _DERIVATIVES and getattr(m, "approximate", "none") == "none":
            return "activation"
        return None
    if node.op == "call_function":
        if node.target in _FUNCTIONS:
            return "activation"
        if node.target is F.layer_norm:
            return "layernorm"
        if node.target is F.linear:
            return "linear"
        if node.target in _SHAPE_FUNCS:
            return "shape"
        return None
    if node.op == "call_method":
        if node.target == "permute":
            return "permute"
        return "shape" if node.target in _SHAPE_METHODS else None
    return None


def head_chain(gm: fx.GraphModule, gap: fx.Node, logits: fx.Node) -> list[fx.Node] | None:
    """The nodes from the pooling's output to the logits, if each has one data input from the
    chain and a closed-form derivative; None otherwise."""
    chain, node = [], gap
    while node is not logits:
        users = [u for u in node.users if u.op != "output"]
        if len(users) != 1:
            return None
        node = users[0]
        data = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if data != [chain[-1] if chain else gap] or _kind(gm, node) is None:
            return None
        chain.append(node)
    return chain


class GradHead(nn.Module):
    """F → logits, and α = ∂logits[class_ids]/∂g (g = GAP(F)), by replaying the traced head."""

    def __init__(self, gm: fx.GraphModule, feature: fx.Node, gap: fx.Node, chain: list[fx.Node]):
        super().__init__()
        self.gm, self.feature, self.gap, self.chain = gm, feature, gap, chain

    def _value(self, a, env):
        if isinstance(a, fx.Node):
            if a.op != "get_attr":
                return env[a]
            obj = self.gm
            for part in a.target.split("."):
                obj = getattr(obj, part)
            return obj
        if isinstance(a, (list, tuple)):
            return type(a)(self._value(x, env) for x in a)
        return a

    def _run(self, node: fx.Node, env):
        args = [self._value(a, env) for a in node.args]
        kwargs = {k: self._value(v, env) for k, v in node.kwargs.items()}
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            if isinstance(m, (nn.Dropout, nn.Identity)):  # eval mode: the identity (some are in place)
                return args[0]
            fn = _OUT_OF_PLACE.get(type(m)) if _kind(self.gm, node) == "activation" else None
            return fn(args[0]) if fn is not None else m(*args, **kwargs)
        if node.op == "call_function" and kwargs.get("inplace"):
            kwargs = {**kwargs, "inplace": False}
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return node.target(*args, **kwargs)

    def forward(self, feat: torch.Tensor, top_k: int):
        """F → (logits, top-K class ids, α of shape (B, K, C))."""
        env = {self.feature: feat}
        env[self.gap] = self._run(self.gap, env)
        inputs = []
        for node in self.chain:
            inputs.append(env[[a for a in node.all_input_nodes if a.op != "get_attr"][0]])
            env[node] = self._run(node, env)
        logits = env[self.chain[-1]]
        class_ids = torch.topk(logits, top_k, dim=1).indices
        # v: (B, K, ...) — one row per chosen class, pulled back through the head.
        v = F.one_hot(class_ids, logits.shape[1]).to(logits.dtype)
        for node, x in zip(reversed(self.chain), reversed(inputs)):
            v = self._back(node, v, x, env)
        return logits, class_ids, v.reshape(v.shape[0], v.shape[1], -1)

    def _back(self, node: fx.Node, v: torch.Tensor, x: torch.Tensor, env) -> torch.Tensor:
        kind = _kind(self.gm, node)
        if kind == "linear":
            w = self.gm.get_submodule(node.target).weight if node.op == "call_module" else self._value(node.args[1], env)
            return torch.matmul(v, w)
        if kind == "activation":
            cls = type(self.gm.get_submodule(node.target)) if node.op == "call_module" else _FUNCTIONS[node.target]
            return v * _DERIVATIVES[cls](x).unsqueeze(1)
        if kind == "permute":
            dims = node.args[1:] if len(node.args) > 2 else node.args[1]
            inverse = [list(dims).index(i) for i in range(len(dims))]
            return v.permute(0, 1, *[d + 1 for d in inverse[1:]])
        if kind == "layernorm":
            if node.op == "call_module":
                m = self.gm.get_submodule(node.target)
                shape, gamma, eps = m.normalized_shape, m.weight, m.eps
            else:
                shape = node.args[1]
                gamma = self._value(node.args[2], env) if len(node.args) > 2 else node.kwargs.get("weight")
                gamma = self._value(gamma, env) if isinstance(gamma, fx.Node) else gamma
                eps = node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5)
            dims = tuple(range(-len(shape), 0))
            xe = x.unsqueeze(1)
            mu = xe.mean(dims, keepdim=True)
            sigma = torch.sqrt(((xe - mu) ** 2).mean(dims, keepdim=True) + eps)
            xhat = (xe - mu) / sigma
            dy = v * gamma if gamma is not None else v
            return (dy - dy.mean(dims, keepdim=True) - xhat * (dy * xhat).mean(dims, keepdim=True)) / sigma
        return v.reshape(v.shape[0], v.shape[1], *x.shape[1:])  # shape-only: undo the reshape

