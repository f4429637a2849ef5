"""The package version, in a module of its own so that code below the package can read it without importing
the package (whose __init__ imports the API, which imports that code back)."""
__version__ = "0.1.0"
