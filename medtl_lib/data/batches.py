"""Batching rules shared by every loader (images, the decoded cache, stored features)."""
from __future__ import annotations


def drop_single_last(n: int, batch_size: int, train: bool) -> bool:
    """A last training batch of one sample breaks BatchNorm; drop only that case."""
    return train and n > batch_size and n % batch_size == 1
