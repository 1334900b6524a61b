"""Files the library reads at run time (shipped in the wheel, read with importlib.resources)."""
