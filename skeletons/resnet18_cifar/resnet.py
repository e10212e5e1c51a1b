"""ResNet18 for CIFAR-10 (32x32 colour images, 10 classes).

Unlike the ImageNet ResNet18, the network starts with a single 3x3 convolution of
64 channels (no 7x7 convolution, no max pooling): CIFAR-10 images are small.

    conv 3x3, 64  ->  layer1 (64)  ->  layer2 (128, /2)  ->  layer3 (256, /2)
                  ->  layer4 (512, /2)  ->  average pool 4x4  ->  linear 512 -> 10
"""

import torch.nn as nn
import torch.nn.functional as F


###########################################################################
# Question 1 : Implement BasicBlock, the residual block of ResNet18 (30 points).
#   main branch : 3x3 conv (stride) -> BatchNorm -> ReLU -> 3x3 conv (stride 1) -> BatchNorm
#   shortcut    : the input itself; when stride != 1, a 1x1 conv with that stride and a
#                 BatchNorm, so that it has the shape of the main branch
#   output      : ReLU(main branch + shortcut)
#   Every conv has padding that keeps the size (except for the stride) and bias=False,
#   since a BatchNorm follows it.
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super(BasicBlock, self).__init__()
        ##########################################
        ############# fill in here (20 points)
        # Hint : name the layers conv1, bn1, conv2, bn2 and shortcut
        #########################################

    def forward(self, x):
        ##########################################
        ############# fill in here (10 points)
        #########################################
        raise NotImplementedError("Question 1: BasicBlock.forward")
###########################################################################


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10):
        super(ResNet, self).__init__()
        self.in_planes = 64

        # CIFAR-10 stem: one 3x3 convolution with 64 filters, the image size is kept
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    ###########################################################################
    # Question 2 : Implement _make_layer (20 points).
    #   A layer is num_blocks blocks in an nn.Sequential.  Only the first block changes
    #   the size (its stride is `stride`); the others have stride 1.  Each block's
    #   in_planes is what the previous block gives out: keep self.in_planes up to date.
    def _make_layer(self, block, planes, num_blocks, stride):
        ##########################################
        ############# fill in here (20 points)
        #########################################
        raise NotImplementedError("Question 2: ResNet._make_layer")
    ###########################################################################

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)  # 4x4 feature maps -> 1x1
        out = out.view(out.size(0), -1)
        return self.linear(out)


def ResNet18(num_classes=10):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)
