"""A small seeded conv + fc net (16 x 16 inputs) shared by the engine's tests."""
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.fc = torch.nn.Linear(4 * 7 * 7, 5)

    def forward(self, x):
        a = torch.relu(self.c(x))
        return {"a": a, "fc": self.fc(a.flatten(1))}
