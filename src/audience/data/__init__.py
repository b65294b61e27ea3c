"""Data access: the VK-LSVD layout, schema checks, hub download, synthetic generator, streaming readers."""
