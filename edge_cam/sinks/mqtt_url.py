"""MQTT addresses and topics: `mqtt://[user[:password]@]host[:port][/prefix]` and the topic each
stream's events go to, `<prefix>/<device>/<stream>/events`."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..capture import mask_credentials
from ..errors import EdgeCamError

DEFAULT_PORT = 1883
DEFAULT_PREFIX = "edge-cam"
URL_FORM = "mqtt://HOST[:PORT][/TOPIC-PREFIX], e.g. mqtt://192.168.1.10:1883/edge-cam"


def parse_url(url: str) -> tuple[str, int, str, str | None, str | None]:
    """`mqtt://[user[:password]@]host[:port][/prefix]` → host, port, prefix, user, password."""
    try:
        parts = urlsplit(url)
        port = DEFAULT_PORT if parts.port is None else parts.port
    except ValueError:  # a port not a number or out of range, an unclosed [ of an IPv6 host
        raise EdgeCamError(f"cannot use the MQTT address {mask_url(url)!r}: write it as {URL_FORM}.") from None
    if parts.scheme != "mqtt" or not parts.hostname or port <= 0 or parts.query or parts.fragment:
        raise EdgeCamError(f"cannot use the MQTT address {mask_url(url)!r}: write it as {URL_FORM}.")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, unquote(parts.path), user, password


def mask_url(url: str) -> str:
    """The address with its password and secret query values masked, for errors and logs."""
    return mask_credentials(url)


def _level(name: str) -> str:
    # + and # are subscription wildcards and / splits levels: none may appear inside one level.
    name = "".join("_" if c in "+#/\0" else c for c in name).strip()
    return name or "_"


def topic_for(prefix: str, device: str, stream: str) -> str:
    levels = [_level(p) for p in prefix.split("/") if p.strip()] or [DEFAULT_PREFIX]
    topic = "/".join(levels + [_level(device), _level(stream), "events"])
    # Topics starting with $ belong to the broker ($SYS); it would refuse ours.
    return "_" + topic[1:] if topic.startswith("$") else topic
