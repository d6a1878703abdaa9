"""The stack: the spec model, pinned sources (download, verify, unpack, cache), the patch library and applying it."""
