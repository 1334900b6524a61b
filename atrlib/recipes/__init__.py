"""The seed systems as named recipes (one module each): the paper, its numbers, its settings."""
