"""Command-line front ends, one module per command (``python -m atrlib <command>``).

Each module exposes ``add_arguments(parser)`` and ``main(args) -> int``; :mod:`atrlib.__main__`
only dispatches. The library they call never imports them.
"""
