"""Headless Chromium through Selenium, trusting the test server's key."""
import base64
import hashlib
import os
import shutil
import tempfile

from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def spki_hash(key_path):
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


# CALLS.md, "Browser media in tests": a fake microphone and camera without a prompt, ICE
# candidates on loopback (the tests run in a loopback-only network namespace), no mDNS
# hiding of local addresses, and remote audio that plays without a click.
MEDIA_FLAGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
]


def chromium(server, media=False):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="webims-chromium-")
    for arg in [
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,1000",
        "--user-data-dir=" + profile,
        # Trust exactly the test server's key (TLS stays on; nothing else is exempt).
        "--ignore-certificate-errors-spki-list=" + spki_hash(os.path.join(server.data_dir, "tls", "server-key.pem")),
    ] + (MEDIA_FLAGS if media else []):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)
