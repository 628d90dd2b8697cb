"""Executes a notebook in a real Jupyter kernel (nbclient) and fails on the first cell error."""

import sys
import time

import nbclient
import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.monotonic()
nbclient.NotebookClient(nb, timeout=900, kernel_name="python3").execute()
print(f"{path}: {len(nb.cells)} cells executed in {time.monotonic() - start:.0f} s")
