"""Authoring: an article becomes an editable campaign folder, read and checked."""
