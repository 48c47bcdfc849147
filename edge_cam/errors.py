"""The one exception type users see: its message is a plain sentence naming cause and fix."""


class EdgeCamError(Exception):
    """A problem with the user's input (model, file, argument), not a bug in edge-cam.

    The CLI prints the message alone and exits with status 2.
    """
