"""The student's side of the sandbox: a request loop that runs their code.

It receives operations ("import this file", "build that class with these
arguments", "run forward on these tensors", "predict these images") and sends
back plain results.  It never receives test labels, the reference solution or the
rubric; the grader decides what every result is worth.
"""

from __future__ import annotations

import copy
import faulthandler
import gc
import os
import signal
import sys
import threading
import types
from dataclasses import dataclass, field

import torch

from grader import checkpoints, evaluate, introspect, notebook, training
from grader.sandbox import environment, guard, layers, limits, pretrained, protocol
from grader.sandbox.loader import (STOPPED, StudentError, broken_name, describe_exception, import_file,
                                   stopped_text)

_real_exit = os._exit


@dataclass
class WorkerConfig:
    workdir: str
    read_roots: list[str]
    memory_bytes: int
    threads: int
    device: str
    private: list[str] = field(default_factory=list)
    notebook: dict | None = None  # the rubric's notebook options, for .ipynb files
    weight_caches: list[str] | None = None  # torch hub checkpoint folders readable (found by the grader)
    boundary: bool = False  # inside the bubblewrap sandbox (grader.sandbox.boundary)
    # Hard limits the sandbox applies to each student's process (grader.sandbox.fresh)
    disk_bytes: int = 512 << 20  # /tmp, /dev/shm and the student's folder together
    processes: int = 256  # processes and threads
    open_files: int = 1024
    cpu_s: float = 3600.0
    font_cache: str | None = None  # matplotlib's prebuilt font list (grader.sandbox.environment)
    import_s: float | None = None  # a .py file's import is stopped after this long (rubric limits.import_s)


def serve(conn, output, config: WorkerConfig) -> None:
    """Entry point of the student's process.  conn, output: file descriptors (or objects
    with fileno()) of its request channel and of where its prints go."""
    # Objects inherited from the fork server (torch and all) are never garbage: keep the
    # collector off them, or its first full pass costs ~0.2 s and copies their pages.
    gc.freeze()
    # Imports never write bytecode: everything outside the student's folder is read-only, and a
    # refused .pyc write of an installed module must not look like the student writing outside.
    sys.dont_write_bytecode = True
    send_lock = threading.Lock()
    keep = (conn, output)  # noqa: F841  (multiprocessing objects close their fd when collected)
    channel = protocol.Channel(conn if isinstance(conn, int) else conn.fileno())
    output_fd = output if isinstance(output, int) else output.fileno()

    def send(payload: dict) -> None:
        data = protocol.encode(payload)
        with send_lock:
            channel.send_bytes(data)

    torch.set_num_threads(max(1, config.threads))
    _import_native_packages()
    introspect.install_init_recorder()
    layers.record_construction_sites()  # a shape error names the line that built the layer
    # Pretrained weights: read from this machine's hub cache, never downloaded (no network here).
    weight_caches = config.weight_caches if config.weight_caches is not None else pretrained.hub_cache_dirs()
    pretrained.install(weight_caches, notify=lambda message: send({"note": message, "report": True}))
    policy = guard.Policy(workdir=config.workdir, read_roots=config.read_roots + weight_caches,
                          memory_bytes=config.memory_bytes, threads=config.threads, private=config.private,
                          notify=lambda message: send({"note": message}), boundary=config.boundary)
    environment.prepare(config.workdir, config.font_cache)
    status = guard.enter(policy, output_fd)
    # On SIGUSR1, print where the code is (the grader asks before stopping a timed-out operation).
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    _report_exits(send)
    send({"ready": status})
    worker = Worker(config, policy, send)
    while True:
        try:
            request = channel.recv()
        except (EOFError, OSError, protocol.ProtocolError):
            break
        if request.get("op") == "exit":
            break
        reply = worker.handle(request)
        _flush_prints()  # what it printed reaches the report before the answer, and before the end
        send(reply)
    _flush_prints()
    _real_exit(0)


def _flush_prints() -> None:
    """print() to a pipe is block-buffered: without this, a student's unflushed prints are lost."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the student's code may have replaced or closed it
            pass


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
        _flush_prints()
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
        self.optimizers: dict[int, object] = {}  # handle -> the optimizer built with that model
        self.modules: dict[str, object] = {}
        self.last_handle = 0  # handles are never reused, even after a release
        self._violation_mark = 0
        self.wrote: dict[str, list[str]] = {}  # file -> files of the folder its loading wrote

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
            if isinstance(e, NameError):
                self._explain_missing_name(response["error"], getattr(e, "name", None))
            if self.config.boundary and limits.exception_kind(e):
                response["error"]["kind"] = limits.exception_kind(e)  # the grader words the message
        reached = limits.reached(self.config.processes, self.config.open_files) if self.config.boundary else None
        if reached and "error" not in response:  # past a limit though its code caught the error
            response = {"error": {"kind": reached, "message": reached}}
        if len(self.policy.violations) > seen:
            response["violations"] = self.policy.violations[seen:]
        changed = guard.tampered()
        if changed:
            response["tampered"] = changed
        return response

    def _explain_missing_name(self, info: dict, name: str | None) -> None:
        """A name a notebook cell should have defined: say which cell, and how it failed (or, in a
        file, that its statement did not parse)."""
        for module in self.modules.values():
            broken = broken_name(module, name) if name else None
            if broken:
                info["message"] += f" ({name} did not parse: {broken['message']} at line {broken['line']})"
                info["kind"] = broken["kind"]  # the cause is the statement that did not parse
                return
            run = notebook.notebook_run(module)
            why = run.why_missing(name) if name and run is not None else None
            if why:
                info["message"] += f" ({why})"
                return

    # -- loading and building -------------------------------------------------

    def _module(self, file: str):
        if file not in self.modules:
            self._violation_mark = len(self.policy.violations)
            before = _folder_state(self.config.workdir)
            self.modules[file] = import_file(self.config.workdir, file, self.config.notebook, self._after_cell,
                                             budget_s=self.config.import_s)
            self.wrote[file] = _written(before, _folder_state(self.config.workdir))
        return self.modules[file]

    def _after_cell(self, outcome) -> None:
        """A notebook cell's blocked read, write or download is that cell's failure (already
        stopped by the sandbox), not the end of grading: honest notebooks mount drives and
        download data.  Anything else the sandbox refuses stays fatal."""
        new = self.policy.violations[self._violation_mark:]
        if new and all(v.startswith(_CELL_LOCAL_VIOLATIONS) for v in new):
            del self.policy.violations[self._violation_mark:]
        self._violation_mark = len(self.policy.violations)

    def _attr(self, file: str, name: str):
        module = self._module(file)
        obj = module
        for part in name.split("."):
            if not hasattr(obj, part):
                broken = broken_name(module, part) if obj is module else None
                if broken:  # its statement did not parse: that error, not "not defined"
                    raise StudentError(broken)
                run = notebook.notebook_run(module)
                message = run.missing(name) if run is not None else f"{file} does not define {name}"
                stopped = getattr(module, STOPPED, None)
                if stopped:  # defined further down than its import was allowed to run
                    message = (f"{file} does not define {name} before line {stopped['line']}, where its import "
                               f"was stopped ({stopped_text(file, stopped)})")
                raise StudentError({"kind": "missing", "file": file, "message": message})
            obj = getattr(obj, part)
        return obj

    def _section_value(self, file: str, section: str, name: str):
        run = notebook.notebook_run(self._module(file))
        if run is None:
            raise StudentError({"kind": "missing", "file": file, "message": f"{file} is not a notebook"})
        try:
            value, origin = run.value(section, name)
        except LookupError as e:
            raise StudentError({"kind": "missing", "message": str(e).strip("'\"")}) from None
        if value is None:
            raise StudentError({"kind": "missing", "message": f"{origin} is None: not answered yet"})
        return value, origin, run

    def op_ping(self) -> str:
        return "pong"

    def op_load(self, file: str) -> dict:
        module = self._module(file)
        out = {"names": sorted(n for n in vars(module) if not n.startswith("_"))}
        if getattr(module, STOPPED, None):
            out["stopped"] = getattr(module, STOPPED)
        run = notebook.notebook_run(module)
        if run is not None:
            out["notebook"] = run.report()
        if self.wrote.get(file):
            out["wrote"] = self.wrote[file]
        broken = getattr(module, "__grader_broken__", None)
        if broken:  # imported without the statements that do not parse: each is a problem of the file
            out["broken"] = [{k: v for k, v in b.items() if k != "names"} for b in broken]
        return out

    def op_signature(self, file: str, name: str) -> list[dict]:
        return introspect.signature_params(self._attr(file, name))

    def op_build(self, file: str, name: str, args: list | None = None, kwargs: dict | None = None,
                 isolate: dict | None = None, seed: int | None = None, section: str | None = None,
                 with_optimizer: list[str] | None = None) -> dict:
        """Build `name`, or (notebooks) take the model a section built: a copy, so that what
        one item does to it cannot change another's.  with_optimizer: [model, optimizer,
        epochs] parameter names; the optimizer that trains this model is copied with it."""
        extra: dict = {}
        optimizer = None
        if section is not None:
            value, origin, run = self._section_value(file, section, name)
            extra["origin"] = origin
            if isinstance(value, torch.nn.Module):
                setup = run.training_setup(section, value, tuple(with_optimizer)) if with_optimizer else {}
                obj, optimizer = _copy(value, setup.get("optimizer"))
                if with_optimizer:
                    extra.update(epochs=setup["epochs"] if isinstance(setup["epochs"], (int, float)) else None,
                                 optimizer_origin=setup["origin"])
            else:
                obj = introspect.build(types.SimpleNamespace(**{name: value}), name, args, kwargs, isolate,
                                       seed) if callable(value) else value
        else:
            self._attr(file, name)  # a clear message when the name is missing
            obj = introspect.build(self._module(file), name, args, kwargs, isolate, seed)
        if not isinstance(obj, torch.nn.Module):
            what = name if section is not None else f"{name}(...)"
            raise StudentError({"kind": "exception", "file": file,
                                "message": f"{what} is a {type(obj).__name__}, not an nn.Module"})
        self.last_handle += 1
        handle = self.last_handle
        self.objects[handle] = obj
        if optimizer is not None:
            self.optimizers[handle] = optimizer
            extra["optimizer"] = introspect.describe_optimizer(optimizer, obj)
        return {"handle": handle, "type": type(obj).__name__,
                "param_count": sum(p.numel() for p in obj.parameters()),
                "trainable_count": sum(p.numel() for p in obj.parameters() if p.requires_grad), **extra}

    def op_values(self, file: str, section: str, names: list[str]) -> dict:
        """Plain values of notebook variables in a section: tensors with their autograd flags."""
        out = {}
        for name in names:
            try:
                value, _, _ = self._section_value(file, section, name)
            except StudentError as e:
                out[name] = {"missing": e.info["message"]}
                continue
            if isinstance(value, torch.Tensor):
                out[name] = {"tensor": value.detach().cpu().clone(), "requires_grad": value.requires_grad,
                             "is_leaf": value.is_leaf, "dtype": str(value.dtype).replace("torch.", "")}
            else:
                out[name] = {"type": type(value).__name__}
        return out

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

    def op_parameters(self, handle: int) -> dict:
        """The model's parameters, in order: for judging how they were initialised."""
        return {name: p.detach().cpu().clone() for name, p in self.objects[handle].named_parameters()}

    def op_state_shapes(self, handle: int) -> dict:
        return {k: list(v.shape) for k, v in self.objects[handle].state_dict().items()}

    def op_load_state(self, handle: int, state: dict | None = None, checkpoint: str | None = None,
                      by_order: bool = False, data: torch.Tensor | None = None) -> dict:
        """data: the bytes of a handed-in checkpoint, sent by the grader: what the student handed
        in is graded, not what the notebook's own code may have written over it since."""
        model = self.objects[handle]
        notes: list[str] = []
        if checkpoint is not None:
            try:
                state, notes = checkpoints.read_state_dict(checkpoint, data=_bytes(data))
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
        with torch.inference_mode(not train), layers.trace(model):
            out = model(*inputs)
        return _plain_output(out, f"{type(model).__name__}.forward()")

    def op_call(self, file: str, name: str, args: list | None = None, kwargs: dict | None = None,
                seed: int | None = None):
        function = self._attr(file, name)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = function(*(args or []), **(kwargs or {}))
        return _plain_output(out, f"{name}(...)")

    def op_train(self, handle: int, images: dict, labels, mean: list, std: list, recipe: dict,
                 epochs: float | None = None, budget_s: float | None = None, resume: str | None = None,
                 return_state: bool = False) -> dict:
        """Train the model of `handle` on these images (training labels only), sending progress."""
        model = self.objects[handle]
        settings = training.Recipe.model_validate(recipe)
        device = self.config.device
        optimizer = self.optimizers.get(handle) if settings.use_submission_optimizer else None
        notes = []
        if optimizer is not None:
            problem = _unusable(optimizer, model)
            if problem:
                notes.append(f"the submission's optimizer {problem}: the rubric's optimizer is used instead")
                optimizer = None
        own = optimizer is not None
        if optimizer is None:
            optimizer = training.make_optimizer(settings.optimizer, model.parameters())
            self.optimizers[handle] = optimizer
        model.to(device)
        start, base_lrs = 0, None
        if resume is not None:
            start, base_lrs = _resume(model, optimizer, resume)
            notes.append(f"resumed at step {start}")
        array = evaluate.ImageArray(images["path"], tuple(images["shape"])).open()
        data = training.TrainingData.prepare(array, labels, mean, std, device, settings.first)
        result = training.main(model, optimizer, data, settings, epochs=epochs, start_step=start, base_lrs=base_lrs,
                               budget_s=budget_s, on_progress=lambda p: self.send({"progress": p}))
        out = {"result": result.to_dict(), "notes": notes, "submission_optimizer": own,
               "optimizer": introspect.describe_optimizer(optimizer, model)}
        if return_state:
            state = training.checkpoint(model, optimizer, result, settings)
            out["state"] = {"model": state["model"], "optimizer": state["optimizer"]}
        return out

    def op_predict(self, handle: int, images: torch.Tensor, mean: list, std: list, batch_size: int | None = None,
                   precision: str = "fp32", logits: bool = False) -> dict:
        """Class scores (or classes) for one batch of test images the grader sent, in a secret
        order: no file, no path and no index reach this process."""
        model = self.objects[handle].to(self.config.device)
        with layers.trace(model):
            out = evaluate.predict(model, _uint8_images(images), mean, std, device=self.config.device,
                                   batch_size=batch_size, precision=precision, return_logits=logits)
        return {"logits" if logits else "predictions": out}


def _folder_state(folder: str) -> dict[str, tuple[int, int]]:
    """(size, modification time) of each file in the student's folder."""
    state = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                info = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            state[os.path.relpath(path, folder)] = (info.st_size, info.st_mtime_ns)
    return state


def _written(before: dict, after: dict) -> list[str]:
    """Files that loading created or changed (a notebook's torch.save(..., 'challenge.pt'))."""
    return sorted(name for name, state in after.items() if before.get(name) != state)


def _bytes(data) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 1:
        raise StudentError({"kind": "internal", "message": "a checkpoint's bytes come as a uint8 tensor"})
    return data.numpy().tobytes()


def _uint8_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise StudentError({"kind": "internal", "message": "predict takes a uint8 tensor (N, C, H, W) of images"})
    return images


# Refusals that stay inside one notebook cell (see Worker._after_cell).
_CELL_LOCAL_VIOLATIONS = tuple(f"the submission tried to {what}" for what in
                               ("read ", "list the folder ", "write to ", "change ", "use the network"))


def _copy(model: torch.nn.Module, optimizer):
    """Copies of a model and its optimizer that still belong together."""
    try:
        return copy.deepcopy((model, optimizer))
    except Exception:  # a model that cannot be copied is used as it is
        return model, optimizer


def _unusable(optimizer, model) -> str | None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        return f"is a {type(optimizer).__name__}, not a torch.optim optimizer"
    description = introspect.describe_optimizer(optimizer, model)
    if description["not_optimized"] == len(list(model.parameters())):
        return "updates none of this model's weights"
    return None


def _resume(model, optimizer, path: str) -> tuple[int, list[float] | None]:
    """Weights, optimizer state and position from a checkpoint `grader train` wrote."""
    name = os.path.basename(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        saved = None
    if not (isinstance(saved, dict) and {"model", "training"} <= set(saved)):
        raise StudentError({"kind": "exception", "message": f"{name} is already there and was not written by "
                                                            "grader train, so training cannot resume from it"})
    if "optimizer" not in saved:  # a finished run: nothing left to do unless more steps are asked for
        if int(saved["training"]["steps"]) < int(saved["training"]["total_steps"]):
            raise StudentError({"kind": "exception", "message": f"{name} holds no optimizer state to resume"})
    fit = checkpoints.fit(model, saved["model"])
    if not fit["ok"]:
        raise StudentError({"kind": "exception", "message": f"{os.path.basename(path)} does not fit this model "
                                                            f"({len(fit['missing'])} missing, "
                                                            f"{len(fit['unexpected'])} unexpected weights)"})
    if "optimizer" in saved:
        optimizer.load_state_dict(saved["optimizer"])
    info = saved["training"]
    return int(info["steps"]), info.get("base_lrs")


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


def _plain_output(out, what: str = "it"):
    if isinstance(out, torch.Tensor):
        return {"tensor": out.detach()}
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        return {"tensors": [o.detach() for o in out]}
    if out is None:
        raise StudentError({"kind": "exception", "message": f"{what} returned None, not a tensor "
                                                            "(is the question answered?)"})
    raise StudentError({"kind": "exception",
                        "message": f"{what} returned {type(out).__name__}, not a tensor"})


def _import_lazy_torch_modules() -> None:
    """Printing a tensor makes torch import its dispatch-mode modules on first use, which
    builds classes in torch's namespace; done here, when the fork server imports this
    module, a student's first print(tensor) cannot look like changing PyTorch."""
    repr(torch.zeros(2))


_import_lazy_torch_modules()
