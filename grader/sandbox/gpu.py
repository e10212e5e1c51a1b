"""What an NVIDIA GPU needs inside the bubblewrap sandbox, as bubblewrap arguments.

    args = gpu.bwrap_args(bound=["/usr"])   # [] on a machine without NVIDIA devices

CUDA in the student's process opens the device nodes (/dev/nvidiactl, /dev/nvidia0, ...,
/dev/nvidia-uvm), reads /proc/driver/nvidia, and loads the driver's user-space libraries
(libcuda.so.1, libnvidia-*.so), which the host's driver installs, often outside /usr (a
container's /usr/local/nvidia/lib64).  The sandbox gets those: the nodes with --dev-bind,
the rest read-only, each library only when no folder already bound holds it, and /sys
read-only (the driver reads the GPUs' PCI topology there).  No other device is added.

Every place is an argument, so a test can point them at fake files on a machine without a GPU.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

DEV = "/dev"
PROC_DRIVER = "/proc/driver/nvidia"
# The device nodes CUDA opens; nvidia-caps/ holds MIG capabilities.
NODES = ("nvidiactl", "nvidia[0-9]*", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps/*")
# Where drivers put their user-space libraries (Debian/Ubuntu, RHEL, NVIDIA's container toolkit, WSL).
LIBRARY_FOLDERS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                   "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/wsl/lib")
LIBRARIES = ("libcuda.so*", "libnvidia-*.so*", "libcudadebugger.so*")
# What every sandbox binds already (grader.sandbox.boundary._system_binds).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def device_nodes(dev: str = DEV) -> list[str]:
    """The NVIDIA device nodes under `dev`, as paths relative to it ('nvidia0', 'nvidia-caps/nvidia-cap1')."""
    found = set()
    for pattern in NODES:
        for path in glob.glob(os.path.join(dev, pattern)):
            if not os.path.isdir(path):
                found.add(os.path.relpath(path, dev))
    return sorted(found)


def driver_libraries(folders=LIBRARY_FOLDERS, ldconfig: bool = True) -> list[str]:
    """The driver's libraries: those the dynamic linker knows (ldconfig -p), then those in `folders`."""
    found = set(_from_ldconfig()) if ldconfig else set()
    for folder in folders:
        for pattern in LIBRARIES:
            found.update(glob.glob(os.path.join(folder, pattern)))
    return sorted(p for p in found if os.path.exists(p))


def _from_ldconfig() -> list[str]:
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    paths = [line.rsplit("=>", 1)[1].strip() for line in listing.splitlines() if "=>" in line]
    return [p for p in paths if os.path.basename(p).startswith(("libcuda.so", "libnvidia-", "libcudadebugger.so"))]


def bwrap_args(*, bound=(), dev: str = DEV, proc_driver: str = PROC_DRIVER, folders=LIBRARY_FOLDERS,
               ldconfig: bool = True, sys_root: str = "/sys") -> list[str]:
    """bubblewrap arguments giving the sandbox this machine's NVIDIA GPUs.

    bound: folders the sandbox has read-only besides the system's (the Python installation): a
    library inside one of them is there already.  No device node: no arguments at all."""
    nodes = device_nodes(dev)
    if not nodes:
        return []
    bound = (*SYSTEM_FOLDERS, *bound)
    args = ["--ro-bind-try", sys_root, "/sys"]  # read-only: the driver reads the GPUs' PCI topology there
    for folder in sorted({os.path.dirname(rel) for rel in nodes} - {""}):  # bubblewrap would make it 0700
        args += ["--perms", "0755", "--dir", os.path.join(DEV, folder)]
    for rel in nodes:
        args += ["--dev-bind", os.path.join(dev, rel), os.path.join(DEV, rel)]
    if os.path.isdir(proc_driver):
        args += ["--ro-bind", proc_driver, PROC_DRIVER]
    libraries = [lib for lib in driver_libraries(folders, ldconfig) if not _within(lib, bound)]
    parents = sorted({str(p) for lib in libraries for p in Path(lib).parents
                      if str(p) != "/" and not _within(str(p), bound)}, key=len)
    for folder in parents:  # traversable by the student's user: bubblewrap would copy a 0700 parent's mode
        args += ["--perms", "0755", "--dir", folder]
    for library in libraries:
        args += ["--ro-bind", library, library]
    return args


def _within(path: str, folders) -> bool:
    """Whether `path` is visible through one of `folders` (a bind shows what it holds, links and all)."""
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)
