"""The two networks compared with CustomCNN: an ImageNet-pretrained ResNet18 (a CNN)
and resfcn18, a residual network of fully connected layers on the raw pixels (an FCN)."""

import torch.nn as nn
import torch.nn.functional as F
import torchvision


###########################################################################
# Question 2 : ResNet18 from torchvision, pretrained on ImageNet, with its last layer
# replaced for our classes (10 points).
class ResNet18(nn.Module):
    def __init__(self, num_classes=4):
        super(ResNet18, self).__init__()
        ##########################################
        ############# fill in here (10 points)
        # Hint : torchvision.models.resnet18 with ImageNet weights; its last layer is `fc`
        #########################################
        # BEGIN SOLUTION
        resnet18 = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
        resnet18.fc = nn.Linear(resnet18.fc.in_features, num_classes)
        self.resnet18 = resnet18
        # END SOLUTION

    def forward(self, input):
        return self.resnet18(input)
###########################################################################


###########################################################################
# Question 3 : resfcn18, ResNet18's plan with fully connected layers (35 points).
#
# FCBlock(in_features) halves the features:
#   main branch : Linear(in, in/2) -> BatchNorm1d -> ReLU -> Linear(in/2, in/2) -> BatchNorm1d
#   shortcut    : AvgPool1d(kernel_size=3, stride=2, padding=1) over the features
#   output      : ReLU(main branch + shortcut)
class FCBlock(nn.Module):
    def __init__(self, in_features):
        super(FCBlock, self).__init__()
        ##########################################
        ############# fill in here (10 points)
        #########################################
        # BEGIN SOLUTION
        half = in_features // 2
        self.fc1 = nn.Linear(in_features, half)
        self.bn1 = nn.BatchNorm1d(half)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(half, half)
        self.bn2 = nn.BatchNorm1d(half)
        self.downsample = nn.AvgPool1d(kernel_size=3, stride=2, padding=1)
        # END SOLUTION

    def forward(self, x):
        ##########################################
        ############# fill in here (5 points)
        # Hint : AvgPool1d wants (batch, channels, length): view x as (N, 1, in_features)
        #########################################
        # BEGIN SOLUTION
        identity = self.downsample(x.unsqueeze(1)).squeeze(1)
        out = self.relu(self.bn1(self.fc1(x)))
        out = self.bn2(self.fc2(out))
        return self.relu(out + identity)
        # END SOLUTION
        # skeleton: raise NotImplementedError("Question 3: FCBlock.forward")


# resfcn18: resize the image to 192x192, flatten it (3 * 192 * 192 features), then
#   fc1 -> 4096 features -> BatchNorm1d -> ReLU -> AvgPool1d(3, 2, 1) -> 2048 features
#   block1 .. block4: two FCBlocks each, every FCBlock halving: 2048 -> 1024 -> ... -> 8
#   fc2 : 8 -> num_classes
class resfcn18(nn.Module):
    def __init__(self, num_classes=4, img_size=224):
        super(resfcn18, self).__init__()
        self.img_size = img_size
        self.resize = 192
        target_size = 2048
        ##########################################
        ############# fill in here (20 points)
        #########################################
        # BEGIN SOLUTION
        self.fc1 = nn.Linear(3 * self.resize ** 2, target_size * 2)
        self.bn1 = nn.BatchNorm1d(target_size * 2)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool1d(kernel_size=3, stride=2, padding=1)
        self.block1 = nn.Sequential(FCBlock(target_size), FCBlock(target_size // 2))
        self.block2 = nn.Sequential(FCBlock(target_size // 4), FCBlock(target_size // 8))
        self.block3 = nn.Sequential(FCBlock(target_size // 16), FCBlock(target_size // 32))
        self.block4 = nn.Sequential(FCBlock(target_size // 64), FCBlock(target_size // 128))
        self.fc2 = nn.Linear(target_size // 256, num_classes)
        # END SOLUTION

    def forward(self, x):
        if x.shape[-1] != self.resize or x.shape[-2] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        out = self.relu(self.bn1(self.fc1(x.flatten(1))))
        out = self.pool(out.unsqueeze(1)).squeeze(1)
        out = self.block1(out)
        out = self.block2(out)
        out = self.block3(out)
        out = self.block4(out)
        return self.fc2(out)
###########################################################################
