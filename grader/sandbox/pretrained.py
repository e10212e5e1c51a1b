"""Pretrained weights when grading has no network.

Student code often asks torchvision for ImageNet weights before replacing the
classifier (`resnet18(pretrained=True)`, `weights=ResNet18_Weights.DEFAULT`); the
weights that are graded come from the student's own checkpoint.  The student's
process has no network, so downloads are replaced there (and, through `offline()`,
while the grader builds the reference):

  * weights already in the torch hub cache of the grading machine are read from it
    (with weights_only=True: a cached file can never run code);
  * otherwise a torchvision model keeps its random initial weights, and the report
    says so in a note;
  * a direct `torch.hub.load_state_dict_from_url` of a file that is not cached fails
    with a message saying what to do instead (there is no model to fall back on).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
from typing import Callable
from urllib.parse import urlparse

from grader.errors import GraderError

_TORCHVISION_API = "torchvision.models._api"
_lock = threading.Lock()
_thread = threading.local()
_config: dict = {"dirs": [], "notify": None, "always": False, "installed": False}
_original: dict[str, Callable] = {}


class WeightsUnavailable(GraderError, RuntimeError):
    """Pretrained weights that are neither cached nor downloadable here."""


def hub_cache_dirs() -> list[str]:
    """The torch hub checkpoint folder of this machine, when it exists.

    Call before the student's environment is cleaned: it reads TORCH_HOME/XDG_CACHE_HOME."""
    import torch.hub

    folder = os.path.realpath(os.path.join(torch.hub.get_dir(), "checkpoints"))
    return [folder] if os.path.isdir(folder) else []


def install(cache_dirs: list[str], notify: Callable[[str], None] | None) -> None:
    """In the student's process: every weight download goes through this module from now on."""
    _config.update(dirs=list(cache_dirs), notify=notify, always=True)
    _install_patches()


@contextlib.contextmanager
def offline(notify: Callable[[str], None] | None = None):
    """In the grader's process: weight downloads in this thread behave as in the student's."""
    _install_patches()
    previous = getattr(_thread, "active", None), getattr(_thread, "dirs", None)
    _thread.active = notify or (lambda message: None)
    _thread.dirs = hub_cache_dirs()
    try:
        yield
    finally:
        _thread.active, _thread.dirs = previous


def _active() -> bool:
    return _config["always"] or getattr(_thread, "active", None) is not None


def _note(message: str) -> None:
    notify = getattr(_thread, "active", None) or _config["notify"]
    if notify is not None:
        notify(message)


# -- patches ------------------------------------------------------------------


def _install_patches() -> None:
    with _lock:
        if _config["installed"]:
            return
        _config["installed"] = True
        import torch.hub

        _original["load_state_dict_from_url"] = torch.hub.load_state_dict_from_url
        torch.hub.load_state_dict_from_url = load_state_dict_from_url
        model_zoo = sys.modules.get("torch.utils.model_zoo")
        if model_zoo is not None:
            model_zoo.load_url = load_state_dict_from_url
        if _TORCHVISION_API in sys.modules:
            _patch_torchvision(sys.modules[_TORCHVISION_API])
        else:  # importing torchvision costs ~1.5 s: patch it only when the student's code imports it
            sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TORCHVISION_API:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            _patch_torchvision(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def _patch_torchvision(api) -> None:
    weights_enum = api.WeightsEnum
    if getattr(weights_enum.get_state_dict, "_grader_offline", False):
        return
    original = weights_enum.get_state_dict
    _original["get_state_dict"] = original

    def get_state_dict(self, *args, **kwargs):
        if not _active():
            return original(self, *args, **kwargs)
        try:
            return load_state_dict_from_url(self.url)
        except WeightsUnavailable:
            state = _initial_state(self, sys._getframe(1))
            _note(f"pretrained weights {self} are not available offline: the model was built with random "
                  "initial weights (the checkpoint supplies the weights that are graded)")
            return state

    get_state_dict._grader_offline = True
    weights_enum.get_state_dict = get_state_dict
    if getattr(api, "load_state_dict_from_url", None) is _original["load_state_dict_from_url"]:
        api.load_state_dict_from_url = load_state_dict_from_url


def load_state_dict_from_url(url, model_dir=None, map_location=None, progress=True, check_hash=False,
                             file_name=None, weights_only=False):
    """torch.hub.load_state_dict_from_url, from the cache only (when offline)."""
    if not _active():
        return _original["load_state_dict_from_url"](url, model_dir, map_location, progress, check_hash,
                                                     file_name, weights_only)
    import torch

    name = file_name or os.path.basename(urlparse(url).path)
    for folder in _config["dirs"] if _config["always"] else (getattr(_thread, "dirs", None) or []):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    raise WeightsUnavailable(
        f"cannot download {name} while grading (no network, and it is not in the grading machine's torch "
        "hub cache); build the model without pretrained weights (weights=None) and load your trained "
        "checkpoint instead")


def _initial_state(weights, caller) -> dict:
    """The state dict of the model being built, with its random initial weights."""
    import torch

    # torchvision's builders do `model.load_state_dict(weights.get_state_dict(...))`: the
    # model they are building is the caller's `model`, whatever arguments it was given.
    model = caller.f_locals.get("model") if caller is not None else None
    if isinstance(model, torch.nn.Module):
        return dict(model.state_dict())
    builder = _builder_for(type(weights))
    if builder is None:
        raise WeightsUnavailable(f"pretrained weights {weights} are not available offline; build the model "
                                 "with weights=None and load your trained checkpoint instead")
    categories = (getattr(weights, "meta", None) or {}).get("categories") or []
    try:
        model = builder(weights=None, num_classes=len(categories)) if categories else builder(weights=None)
    except TypeError:
        model = builder(weights=None)
    return dict(model.state_dict())


def _builder_for(weights_type):
    import torchvision.models as models

    for name in models.list_models():
        try:
            if models.get_model_weights(name) is weights_type:
                return models.get_model_builder(name)
        except (ValueError, KeyError):
            continue
    return None
