"""fashionrec: image-based fashion product recommendation (Tuinhof, Pirker & Haltmeier, 2018)."""

__version__ = "0.1.0"
