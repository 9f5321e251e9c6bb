"""Paper reproductions (``toylab reproduce NAME``): figures by letter, checked claims, quick and full sizes."""
