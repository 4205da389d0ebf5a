"""Faces in photos: image files, detection, alignment, geometry, paste-back and attributes (uses ``models``)."""
