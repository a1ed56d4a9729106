"""Listening: the human's events become musical state (sounding notes, chord, key, tempo and beat,
phrases, player features). Times here are seconds on the box's monotonic clock."""
