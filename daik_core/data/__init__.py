"""DOTA data: file formats, class lists, splitting and merging of large images, synthetic scenes."""
