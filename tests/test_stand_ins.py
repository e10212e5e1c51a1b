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


def test_a_block_of_another_name_stands_in_by_its_role():
    """The rubric isolates Block; this student called it ResBlock, with parameter names of their own.
    The class Net actually builds stands in, under the role's name and the reference's parameters."""
    introspect.install_init_recorder()
    module = types.ModuleType("student_blocks")
    source = SOURCE.replace("Block", "ResBlock").replace("in_planes, planes, stride=1", "cin, cout, s=1")
    source = source.replace("in_planes, planes * self.expansion, 1, stride", "cin, cout * self.expansion, 1, s")
    source += "\n\nclass Unused(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    exec(compile(source, "student_blocks.py", "exec"), module.__dict__)
    real = module.ResBlock
    reference_params = [{"name": "in_planes", "has_default": False, "default": None},
                        {"name": "planes", "has_default": False, "default": None},
                        {"name": "stride", "has_default": True, "default": 1}]
    built = introspect.build(module, "Net", isolate={"Block": reference_params})
    block = built.layer[0]
    assert type(block).__name__ == "Block" and block.expansion == 4 and not list(block.parameters())
    nodes = introspect.describe(built)
    assert introspect.call_text(nodes["layer.0"]) == "Block(in_planes=8, planes=4, stride=2)"
    assert introspect.call_text(nodes["layer.1"]) == "Block(in_planes=16, planes=4, stride=1)"
    assert module.ResBlock is real and not hasattr(module, "Block")


def test_without_a_class_in_that_role_nothing_stands_in():
    """No class of the file is built inside the target: it is built as it is."""
    introspect.install_init_recorder()
    module = types.ModuleType("student_blocks")
    exec(compile(SOURCE + "\n\nclass Head(nn.Module):\n    pass\n", "student_blocks.py", "exec"), module.__dict__)
    built = introspect.build(module, "Block", args=[8, 4], isolate={"Missing": []})
    assert type(built) is module.Block and list(built.parameters())
    assert not hasattr(module, "Missing")
