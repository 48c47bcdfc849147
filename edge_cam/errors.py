"""The one exception type users see: its message is a plain sentence naming cause and fix."""


class EdgeCamError(Exception):
    """A problem with the user's input (model, file, argument), not a bug in edge-cam.

    The CLI prints the message alone and exits with status 2.
    """


class UnreadableImage(EdgeCamError):
    """An image file that cannot be decoded here: missing, not an image, corrupt, or larger than the
    pixel limit (a possible decompression bomb). Commands that read many photos catch it to skip,
    name and count the file; for one file it is an EdgeCamError like any other."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of a foreign exception's message, cut to `limit` characters, for an
    EdgeCamError sentence (native libraries raise multi-line logs, or no message at all)."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
