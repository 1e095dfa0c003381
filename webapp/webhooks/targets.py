"""Where a webhook may go: an https URL (http when allowed) whose host is not loopback, private,
link-local or a cloud's metadata address, unless private targets are allowed. The same rule is
applied at create (to every address the name has then) and at send (to the address connected:
requests-hardened pins the connection to the address it checked)."""
import ipaddress
import socket
from urllib.parse import urlsplit

from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES

EVENTS = ("start", "output", "completed")
DEFAULT_EVENTS = ("completed",)
MAX_URL = 2000


class Refused(ValueError):
    """A webhook URL that may not be used; the message says why."""


def forbidden(address):
    """Whether a webhook may not go to this IP address (a string)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or any(ip in net for net in EXTRA_BLOCKED_NET_RANGES))


def check(url, allow_http=False, allow_private=False, resolve=None):
    """The URL, or Refused. A name that does not resolve now is let through: the send checks
    again, against the address it connects to."""
    parts, port = _parsed(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise Refused("must be an https URL" + (" (or http)" if allow_http else
                                                 " (http is refused unless WEBHOOK_ALLOW_HTTP=1)"))
    if parts.username or parts.password:
        raise Refused("must not carry a user name or password")
    if allow_private:
        return url
    for address in _addresses(parts.hostname, port, resolve or socket.getaddrinfo):
        if forbidden(address):
            raise Refused(f"resolves to {address}, a loopback, private, link-local or metadata address; "
                          "webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE=1 allows these)")
    return url


def _parsed(url):
    """(the URL's parts, its port), or Refused when the HTTP client could not use it either."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname:
            parts.hostname.encode("idna")  # an empty or over-long label fails here, as it would at send
    except (ValueError, UnicodeError):
        raise Refused("is not a valid URL (scheme://host[:port]/path, with a port from 1 to 65535)") from None
    return parts, port


def _addresses(host, port, resolve):
    try:
        return {info[4][0] for info in resolve(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return set()
