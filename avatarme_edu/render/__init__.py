"""Rendering: shading, the pythreejs scene and figures. Submodules are imported on demand (no imports here)."""
