"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class FantasyPortraitError(Exception):
    """Base class for every error meant for the user (bad input, missing files, wrong weights)."""


class InputError(FantasyPortraitError):
    """An input file (image, video, manifest, config) is missing, unreadable or unsuitable."""


class CheckpointError(FantasyPortraitError):
    """A weight file or folder is missing, truncated, of the wrong model, or does not fit the model."""


class FaceError(FantasyPortraitError):
    """Faces could not be found, tracked or matched as needed."""
