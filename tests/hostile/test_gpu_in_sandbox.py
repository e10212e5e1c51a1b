"""Issue 17, point 10: with --device cuda the sandbox holds what CUDA needs, and no more.

On a machine without a GPU: fake device nodes, a fake /proc/driver/nvidia and fake driver
libraries, first as the bubblewrap arguments grader.sandbox.gpu returns, then seen from a
real student's process inside bubblewrap.  bench/gpu_check.py checks the real thing on a GPU."""

from __future__ import annotations

import functools
import os
import stat
import textwrap
from pathlib import Path

import pytest

from grader.sandbox import boundary, gpu
from grader.sandbox.session import Limits, StudentProcess, isolated

needs_bwrap = pytest.mark.skipif(not isolated(), reason=f"no OS sandbox here: {boundary.available()[1]} "
                                                        "(CI installs bubblewrap, so these run there)")

NODES = ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset",
         "nvidia-caps/nvidia-cap1"]


def fake_machine(root: Path) -> dict:
    """A /dev with NVIDIA nodes (copies of /dev/null where this user may make devices) and
    others, /proc/driver/nvidia, and driver libraries in two folders."""
    dev = root / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    for name in NODES + ["null", "nvme0", "fb0"]:
        try:
            os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
        except PermissionError:
            (dev / name).write_bytes(b"")
        (dev / name).chmod(0o666)  # as the driver makes them: every user may open a GPU
    driver = root / "proc" / "driver" / "nvidia"
    (driver / "gpus").mkdir(parents=True)
    (driver / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    inside, outside = root / "python" / "lib", root / "nvidia" / "lib64"
    for folder in (inside, outside):
        folder.mkdir(parents=True)
    for name in ("libcuda.so.550.54.15", "libnvidia-ml.so.550.54.15", "libnvidia-ptxjitcompiler.so.1"):
        (outside / name).write_bytes(b"\x7fELF fake driver library")
    (outside / "libcudart.so.12").write_bytes(b"the toolkit's, which torch carries: not the driver's")
    (inside / "libcuda.so.1").write_bytes(b"\x7fELF inside a folder the sandbox binds already")
    return {"dev": str(dev), "proc_driver": str(driver), "folders": [str(inside), str(outside)],
            "ldconfig": False, "bound": [str(root / "python")], "outside": outside}


def options(args: list[str]) -> list[tuple[str, ...]]:
    """bubblewrap's arguments as (option, value...) tuples."""
    arity = {"--perms": 1, "--dir": 1, "--dev-bind": 2, "--ro-bind": 2, "--ro-bind-try": 2}
    found, i = [], 0
    while i < len(args):
        found.append(tuple(args[i:i + 1 + arity[args[i]]]))
        i += 1 + arity[args[i]]
    return found


def test_the_arguments_bind_the_nodes_the_driver_and_its_libraries_outside_bound_folders(tmp_path):
    fake = fake_machine(tmp_path)
    outside = fake.pop("outside")
    args = gpu.bwrap_args(**fake)
    assert args[args.index("--dir") - 2:args.index("--dir") + 2] == ["--perms", "0755", "--dir", "/dev/nvidia-caps"]
    pairs = options(args)
    dev = fake["dev"]
    assert sorted(p for p in pairs if p[0] == "--dev-bind") == sorted(
        ("--dev-bind", f"{dev}/{name}", f"/dev/{name}") for name in NODES)
    assert ("--ro-bind", fake["proc_driver"], "/proc/driver/nvidia") in pairs
    libraries = sorted(p[1] for p in pairs if p[0] == "--ro-bind" and p[1] != fake["proc_driver"])
    assert libraries == sorted(str(outside / n) for n in ("libcuda.so.550.54.15", "libnvidia-ml.so.550.54.15",
                                                         "libnvidia-ptxjitcompiler.so.1"))
    assert all(p[1] == p[2] for p in pairs if p[1] in libraries)  # where they are, read-only
    assert not any(name in " ".join(args) for name in ("nvme0", "fb0", "/null", "libcudart"))
    assert ("--dev-bind", "/dev", "/dev") not in pairs and "--bind" not in args  # nothing writable but nodes


def test_without_nvidia_devices_there_is_nothing_to_bind(tmp_path):
    fake = fake_machine(tmp_path)
    fake.pop("outside")
    for name in NODES:
        (Path(fake["dev"]) / name).unlink()
    assert gpu.bwrap_args(**fake) == []


def test_a_cpu_sandbox_gets_none_of_it(tmp_path, monkeypatch):
    fake = fake_machine(tmp_path)
    fake.pop("outside")
    monkeypatch.setattr(boundary.gpu, "bwrap_args", functools.partial(gpu.bwrap_args, **fake))
    sandbox = boundary.Sandbox.__new__(boundary.Sandbox)
    sandbox.binds, sandbox.workdir = (), str(tmp_path)
    for device, expected in (("cpu", False), ("cuda", True), ("cuda:1", True)):
        sandbox.device = device
        argv = sandbox._argv([], 3, drop=False)
        assert (f"{fake['dev']}/nvidia0" in argv) is expected, device


PROBE = textwrap.dedent("""
    import os
    import torch

    def seen(library):
        import grader.sandbox.guard as guard
        guard._policy = None  # the OS's view, not the audit hook's
        checks = [os.path.exists("/dev/" + name) for name in {nodes!r}]
        with open("/dev/nvidia0", "wb") as f:  # a device node the student's process may open
            checks.append(f.write(b"x") == 1)
        checks.append(os.path.exists(library))
        checks.append(not os.path.exists("/dev/nvme0") and not os.path.exists("/dev/fb0"))
        return torch.tensor([float(c) for c in checks])
""")


@needs_bwrap
def test_a_student_process_on_cuda_sees_the_gpu_inside_bubblewrap(tmp_path, monkeypatch):
    fake = fake_machine(tmp_path)
    library = str(fake.pop("outside") / "libcuda.so.550.54.15")
    # /proc/driver/nvidia is the kernel module's, in every procfs (the sandbox's fresh one too): the
    # bind lays the host's read-only over it.  This kernel has none to lay the fake one over.
    fake["proc_driver"] = str(tmp_path / "no-nvidia-module")
    monkeypatch.setattr(boundary.gpu, "bwrap_args", functools.partial(gpu.bwrap_args, **fake))
    (tmp_path / "probe.py").write_text(PROBE.format(nodes=NODES))
    with StudentProcess({"probe.py": tmp_path / "probe.py"}, Limits(timeout_s=60), device="cuda") as student:
        flags = student.call("call", file="probe.py", name="seen", args=[library])["tensor"].tolist()
        assert student.isolation["boundary"].startswith("bubblewrap")
    assert flags == [1.0] * (len(NODES) + 3)

    with StudentProcess({"probe.py": tmp_path / "probe.py"}, Limits(timeout_s=60), device="cpu") as student:
        failure = None
        try:
            student.call("call", file="probe.py", name="seen", args=[library])
        except Exception as e:  # no /dev/nvidia0 to open on a CPU sandbox
            failure = e
    assert failure is not None and "nvidia0" in str(failure)
