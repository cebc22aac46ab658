"""Code that generated files carry with them (copied as source, see numpy_target.py).

It is formatted with ruff's default style (ruff.toml here), as the generated
files are, so a copied function reads the same in both places.
"""
