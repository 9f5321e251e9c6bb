"""Models: one module per family; equinox Modules with weights named as the papers name them."""
