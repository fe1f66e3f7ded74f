"""Data: the task registry (``tasks``) and its sources (embedded world, image folders, torchvision, typographic
sets) on their shared ``task_types``; safe image reading; the embedded world and pretraining corpus."""
