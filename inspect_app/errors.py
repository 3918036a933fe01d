"""User-facing errors: each carries a message an operator can act on (never a raw traceback)."""


class InspectAppError(Exception):
    """Base class for errors shown to users as a one-line message."""


class ImageLoadError(InspectAppError):
    """An image could not be read (corrupt, truncated, not an image, too large)."""


class NotEnoughImagesError(InspectAppError):
    """Too few usable good images to fit or calibrate a product."""


class ProfileError(InspectAppError):
    """A product profile is missing, corrupt or incompatible with this installation."""
