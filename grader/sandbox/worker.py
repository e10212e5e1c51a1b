"""The student's side of the sandbox: a request loop that runs their code.

It receives operations ("import this file", "build that class with these
arguments", "run forward on these tensors", "predict these images") and sends
back plain results.  It never receives test labels, the reference solution or the
rubric; the grader decides what every result is worth.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from dataclasses import dataclass, field

import torch

from grader import checkpoints, evaluate, introspect
from grader.sandbox import guard, pretrained, protocol
from grader.sandbox.loader import StudentError, describe_exception, import_file

_real_exit = os._exit


@dataclass
class WorkerConfig:
    workdir: str
    read_roots: list[str]
    memory_bytes: int
    threads: int
    device: str
    private: list[str] = field(default_factory=list)


def serve(conn, output, config: WorkerConfig) -> None:
    """Entry point of the student's process."""
    send_lock = threading.Lock()

    def send(payload: dict) -> None:
        data = protocol.encode(payload)
        with send_lock:
            conn.send_bytes(data)

    torch.set_num_threads(max(1, config.threads))
    _import_native_packages()
    introspect.install_init_recorder()
    # Pretrained weights: read from this machine's hub cache, never downloaded (no network here).
    weight_caches = pretrained.hub_cache_dirs()
    pretrained.install(weight_caches, notify=lambda message: send({"note": message, "report": True}))
    policy = guard.Policy(workdir=config.workdir, read_roots=config.read_roots + weight_caches,
                          memory_bytes=config.memory_bytes, threads=config.threads, private=config.private,
                          notify=lambda message: send({"note": message}))
    status = guard.enter(policy, output.fileno())
    # On SIGUSR1, print where the code is (the grader asks before stopping a timed-out operation).
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    _report_exits(send)
    send({"ready": status})
    worker = Worker(config, policy, send)
    while True:
        try:
            request = protocol.decode(conn.recv_bytes())
        except (EOFError, OSError):
            break
        if request.get("op") == "exit":
            break
        send(worker.handle(request))
    _real_exit(0)


def _import_native_packages() -> None:
    """torchvision loads its C++ operators through ctypes, which the audit hook refuses to
    student code: import it before hardening (free when the fork server preloaded it)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or broken: the student's import will say so
        pass


def _report_exits(send) -> None:
    """Tell the grader when the student's code ends the process itself."""
    def reporting_exit(code=0):
        try:
            send({"note": f"the submission called os._exit({code})"})
        finally:
            _real_exit(code)

    os._exit = reporting_exit
    try:
        import posix

        posix._exit = reporting_exit
    except ImportError:
        pass


class Worker:
    def __init__(self, config: WorkerConfig, policy: guard.Policy, send):
        self.config = config
        self.policy = policy
        self.send = send
        self.objects: dict[int, object] = {}
        self.modules: dict[str, object] = {}
        self.last_handle = 0  # handles are never reused, even after a release

    def handle(self, request: dict) -> dict:
        op = request.get("op", "")
        method = getattr(self, f"op_{op}", None)
        if method is None:
            return {"error": {"kind": "internal", "message": f"unknown operation {op!r}"}}
        seen = len(self.policy.violations)
        try:
            response = {"result": method(**request.get("args", {}))}
        except BaseException as e:  # student code can raise anything, SystemExit included
            response = {"error": describe_exception(e, self.config.workdir)}
        if len(self.policy.violations) > seen:
            response["violations"] = self.policy.violations[seen:]
        changed = guard.tampered()
        if changed:
            response["tampered"] = changed
        return response

    # -- loading and building -------------------------------------------------

    def _module(self, file: str):
        if file not in self.modules:
            self.modules[file] = import_file(self.config.workdir, file)
        return self.modules[file]

    def _attr(self, file: str, name: str):
        module = self._module(file)
        obj = module
        for part in name.split("."):
            if not hasattr(obj, part):
                raise StudentError({"kind": "missing", "file": file,
                                    "message": f"{file} does not define {name}"})
            obj = getattr(obj, part)
        return obj

    def op_ping(self) -> str:
        return "pong"

    def op_load(self, file: str) -> dict:
        module = self._module(file)
        return {"names": sorted(n for n in vars(module) if not n.startswith("_"))}

    def op_signature(self, file: str, name: str) -> list[dict]:
        return introspect.signature_params(self._attr(file, name))

    def op_build(self, file: str, name: str, args: list | None = None, kwargs: dict | None = None,
                 isolate: dict | None = None, seed: int | None = None) -> dict:
        self._attr(file, name)  # a clear message when the name is missing
        obj = introspect.build(self._module(file), name, args, kwargs, isolate, seed)
        if not isinstance(obj, torch.nn.Module):
            raise StudentError({"kind": "exception", "file": file,
                                "message": f"{name}(...) returned {type(obj).__name__}, not an nn.Module"})
        self.last_handle += 1
        handle = self.last_handle
        self.objects[handle] = obj
        return {"handle": handle, "type": type(obj).__name__,
                "param_count": sum(p.numel() for p in obj.parameters()),
                "trainable_count": sum(p.numel() for p in obj.parameters() if p.requires_grad)}

    def op_release(self, handle: int) -> None:
        self.objects.pop(handle, None)

    # -- inspecting -------------------------------------------------------------

    def op_describe(self, handle: int, input_shapes: list | None = None) -> dict:
        model = self.objects[handle]
        out = {"nodes": introspect.describe(model)}
        if input_shapes:
            inputs = [torch.randn(*shape) for shape in input_shapes]
            out["input_shapes"] = introspect.record_input_shapes(model, inputs)
        return out

    def op_state_shapes(self, handle: int) -> dict:
        return {k: list(v.shape) for k, v in self.objects[handle].state_dict().items()}

    def op_load_state(self, handle: int, state: dict | None = None, checkpoint: str | None = None,
                      by_order: bool = False) -> dict:
        model = self.objects[handle]
        notes: list[str] = []
        if checkpoint is not None:
            try:
                state, notes = checkpoints.read_state_dict(checkpoint)
            except checkpoints.CheckpointRefused as e:
                return {"ok": False, "refused": str(e)}
        result = checkpoints.fit(model, state)
        if not result["ok"] and by_order:
            renamed = _match_by_order(model, state)
            if renamed is not None:
                result = checkpoints.fit(model, renamed)
                notes.append("parameters matched by order and shape (names differ from the reference)")
        result["notes"] = notes
        return result

    # -- running ----------------------------------------------------------------

    def op_forward(self, handle: int, inputs: list, train: bool = False, seed: int | None = None):
        model = self.objects[handle]
        model.train(train)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode(not train):
            out = model(*inputs)
        return _plain_output(out)

    def op_call(self, file: str, name: str, args: list | None = None, kwargs: dict | None = None,
                seed: int | None = None):
        function = self._attr(file, name)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = function(*(args or []), **(kwargs or {}))
        return _plain_output(out)

    def op_predict(self, handle: int, images: dict, mean: list, std: list, batch_size: int | None = None,
                   precision: str = "fp32", indices=None, logits: bool = False) -> dict:
        model = self.objects[handle].to(self.config.device)
        array = evaluate.ImageArray(images["path"], tuple(images["shape"])).open()
        out = evaluate.predict(model, array, mean, std, device=self.config.device, batch_size=batch_size,
                               precision=precision, indices=indices, return_logits=logits)
        return {"logits" if logits else "predictions": out}


def _match_by_order(model: torch.nn.Module, state: dict):
    """Rename `state` onto `model` when both hold the same shapes in the same order."""
    own = model.state_dict()
    if len(own) != len(state):
        return None
    renamed = {}
    for (own_key, own_value), (_, value) in zip(own.items(), state.items()):
        if tuple(own_value.shape) != tuple(value.shape):
            return None
        renamed[own_key] = value
    return renamed


def _plain_output(out):
    if isinstance(out, torch.Tensor):
        return {"tensor": out.detach()}
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        return {"tensors": [o.detach() for o in out]}
    raise StudentError({"kind": "exception",
                        "message": f"returned {type(out).__name__}, not a tensor"})
