"""Stage notebooks the tests write (import as ``from stage_notebooks import stage_notebook``)."""
from pathlib import Path


def stage_notebook(path: Path, params: str, body: str) -> Path:
    """A notebook at ``path``: a cell tagged ``parameters`` holding ``params``, then ``body``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path
