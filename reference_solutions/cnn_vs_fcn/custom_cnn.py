"""A CNN written for the task: five convolution blocks, then a small classifier."""

import torch.nn as nn


###########################################################################
# Question 1 : Implement CustomCNN (20 points).
#   Five blocks, each: 3x3 conv (padding 1) -> BatchNorm -> ReLU -> 2x2 average pooling
#   (stride 2).  Channels: 3 -> 32 -> 64 -> 128 -> 256 -> 512.  After the five blocks the
#   image is img_size // 32 pixels wide: average it down to 1x1, then
#   fc1 (512 -> 256) -> ReLU -> fc2 (256 -> num_cls).
class CustomCNN(nn.Module):
    def __init__(self, num_cls=4, img_size=224):
        super(CustomCNN, self).__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AvgPool2d(2, stride=2),
        )
        ##########################################
        ############# fill in here (20 points)
        # Hint : block2 ... block5 like block1; then self.pool, self.fc1, self.relu, self.fc2
        #########################################
        # BEGIN SOLUTION
        self.block2 = self._block(32, 64)
        self.block3 = self._block(64, 128)
        self.block4 = self._block(128, 256)
        self.block5 = self._block(256, 512)
        self.pool = nn.AvgPool2d(img_size // 32)
        self.fc1 = nn.Linear(512, 256)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(256, num_cls)
        # END SOLUTION

    # BEGIN SOLUTION
    @staticmethod
    def _block(in_channels, out_channels):
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.AvgPool2d(2, stride=2),
        )

    # END SOLUTION
    def forward(self, x):
        out = self.block1(x)
        out = self.block2(out)
        out = self.block3(out)
        out = self.block4(out)
        out = self.block5(out)
        out = self.pool(out).flatten(1)  # (N, 512)
        return self.fc2(self.relu(self.fc1(out)))
###########################################################################
