"""Build the torch classifier named on the command line and load its weights."""
from __future__ import annotations

import importlib
import os

import torch
import torchvision
from torch import nn

from edge_cam.errors import EdgeCamError, first_line


def imagenet_labels() -> list[str]:
    """torchvision's own ImageNet class names (shipped in the wheel, no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    return list(_IMAGENET_CATEGORIES)


def build_model(spec: str, num_classes: int | None = None) -> nn.Module:
    """`torchvision:<builder>`, `timm:<name>` or `package.module:callable` → an nn.Module in eval mode."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if spec.startswith("torchvision:"):
        name = spec.split(":", 1)[1]
        if name not in torchvision.models.list_models():
            raise EdgeCamError(f"torchvision has no model {name!r}; see "
                               "torchvision.models.list_models() for the names.")
        if name.startswith("googlenet") or name.startswith("inception"):
            kwargs.update(init_weights=True)  # silences the "weights init will change" warning
        try:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        except Exception as e:
            raise EdgeCamError(f"cannot build torchvision:{name} ({e}).") from None
    elif spec.startswith("timm:"):
        model = _timm_model(spec.split(":", 1)[1], kwargs)
    elif ":" in spec:
        module_name, attr = spec.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise EdgeCamError(f"cannot import {spec} ({e}); is the package on PYTHONPATH?") from None
        model = factory(**kwargs) if callable(factory) and not isinstance(factory, nn.Module) else factory
        if not isinstance(model, nn.Module):
            raise EdgeCamError(f"{spec} gave a {type(model).__name__}, not a torch nn.Module.")
    else:
        raise EdgeCamError(f"model {spec!r} should be 'torchvision:<builder>', 'timm:<name>' or "
                           "'package.module:callable'.")
    return model.eval()


def _timm_model(name: str, kwargs: dict) -> nn.Module:
    """A timm architecture with its own initialisation (never its pretrained download: pretrained
    weights come through --weights as a state_dict file)."""
    try:
        import timm
    except ImportError:
        raise EdgeCamError(f"timm:{name} needs timm; install it with `pip install timm`.") from None
    if not timm.is_model(name):
        raise EdgeCamError(f"timm has no model {name!r}; see timm.list_models() for the names.")
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:
        raise EdgeCamError(f"cannot build timm:{name} ({first_line(e, 160)}).") from None


def load_weights(model: nn.Module, weights: str, spec: str) -> None:
    """A state_dict file (plain, or wrapped as {'state_dict': ...} / {'model': ...}, with or
    without DataParallel's 'module.' prefix), or a torchvision weights name such as
    IMAGENET1K_V1 (that one downloads, so it needs the internet)."""
    if os.path.exists(weights):
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:
            raise EdgeCamError(f"cannot read weights {weights} ({first_line(e, 160)}).") from None
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise EdgeCamError(f"{weights} holds a {type(state).__name__}, not a state_dict.")
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise EdgeCamError(f"the weights in {weights} do not fit {spec} "
                               f"({str(e).splitlines()[1].strip()[:200] if len(str(e).splitlines()) > 1 else e}); "
                               "check the architecture and --num-classes.") from None
        return
    if not spec.startswith("torchvision:") or os.sep in weights:
        raise EdgeCamError(f"weights file {weights} does not exist.")
    name = spec.split(":", 1)[1]
    try:
        enum = torchvision.models.get_model_weights(name)
        w = enum[weights.split(".")[-1]]
    except (KeyError, ValueError):
        raise EdgeCamError(f"{weights!r} is neither a file nor a torchvision weights name for {name}.") from None
    try:
        model.load_state_dict(w.get_state_dict(progress=True))
    except Exception as e:
        raise EdgeCamError(f"cannot download torchvision weights {weights} ({str(e)[:120]}); download "
                           "them where there is internet and pass the file to --weights.") from None
