"""A small client of rtpengine's ng protocol for tests: bencode over UDP, to look into the
eIMS-AGW that `webims serve` runs (which media sessions it holds)."""
import os
import re
import socket


def encode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(encode(v) for v in value) + b"e"
    if isinstance(value, dict):
        keys = sorted(k.encode() if isinstance(k, str) else k for k in value)
        return b"d" + b"".join(encode(k) + encode(value[k.decode()]) for k in keys) + b"e"
    raise TypeError(value)


def decode(data, i=0):
    """(value, next index); byte strings come back as str when they are UTF-8."""
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while data[i:i + 1] != b"e":
            item, i = decode(data, i)
            items.append(item)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[0::2], items[1::2])), i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    raw = data[colon + 1:colon + 1 + length]
    try:
        raw = raw.decode()
    except UnicodeDecodeError:
        pass
    return raw, colon + 1 + length


def request(port, command, host="127.0.0.1", timeout=3.0):
    cookie = os.urandom(6).hex()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(cookie.encode() + b" " + encode(command), (host, port))
        data, _ = s.recvfrom(65536)
    got_cookie, body = data.split(b" ", 1)
    assert got_cookie.decode() == cookie, "reply to another request"
    return decode(body)[0]


def calls(port):
    """The call IDs of every media session the gateway holds."""
    return sorted(request(port, {"command": "list", "limit": 1000}).get("calls", []))


def ng_port(server_log):
    """The embedded rtpengine's ng port, from `webims serve`'s start-up lines."""
    m = re.search(r"eIMS-AGW rtpengine embedded \(ng [0-9.]+:(\d+)", server_log)
    return int(m.group(1)) if m else None


def tags(port, call_id):
    """The dialog parties' tags the gateway knows in a session (an answered offer has both)."""
    reply = request(port, {"command": "query", "call-id": call_id})
    return sorted(tag for tag in reply.get("tags", {}) if tag)
