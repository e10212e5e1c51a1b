"""Stand-ins (target.isolate) keep the plain class attributes of the class they replace:
ResNet's _make_layer reads `block.expansion`, so a stand-in without it could not be built."""

from __future__ import annotations

import textwrap
import types

from grader import introspect

SOURCE = textwrap.dedent("""
    import torch.nn as nn


    class Block(nn.Module):
        expansion = 4
        kind = "bottleneck"
        table = {"not": "copied"}  # only plain values are kept

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv = nn.Conv2d(in_planes, planes * self.expansion, 1, stride)


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Sequential(Block(8, 4, 2), Block(4 * Block.expansion, 4))
            self.fc = nn.Linear(4 * Block.expansion, 3)
""")


def test_stand_in_keeps_plain_class_attributes():
    introspect.install_init_recorder()
    module = types.ModuleType("student_blocks")
    exec(compile(SOURCE, "student_blocks.py", "exec"), module.__dict__)
    real = module.Block
    built = introspect.build(module, "Net", isolate={"Block": []})
    block = built.layer[0]
    assert type(block) is not real and type(block).__name__ == "Block"
    assert block.expansion == 4 and block.kind == "bottleneck" and not hasattr(block, "table")
    assert not list(block.parameters())  # a stand-in records, it builds nothing
    assert built.fc.in_features == 16
    nodes = introspect.describe(built)
    assert introspect.call_text(nodes["layer.1"]) == "Block(in_planes=16, planes=4, stride=1)"
    assert module.Block is real  # the student's class is back after building
