"""Data: the task registry, ImageFolder / torchvision sources, safe image reading, the embedded world."""
