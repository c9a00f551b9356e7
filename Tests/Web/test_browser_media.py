"""Issue 29: calls with media from the demo page in Chromium, through the eP-CSCF's rtpengine.
Each test runs in its own loopback-only network namespace (`unshare -n`, root): the server,
rtpengine, SIPp, the phone's RTP endpoint and Chromium all inside, so ICE can pick nothing
but loopback and nothing leaves the machine. `MediaInBrowserTests` starts each test of
`InsideNamespace` that way; run alone outside one, `InsideNamespace` is skipped."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

import ngcontrol
from harness import Server, free_port, wait_for
from test_calls import SCENARIOS, CallHelpers, sipp

HERE = os.path.dirname(os.path.abspath(__file__))
INSIDE = os.environ.get("WEBIMS_NETNS") == "1"


def can_make_namespaces():
    return (os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip") and shutil.which("rtpengine")
            and shutil.which("sipp") and shutil.which("chromium"))


@unittest.skipUnless(can_make_namespaces(), "needs root, unshare, ip, rtpengine, sipp and chromium")
class MediaInBrowserTests(unittest.TestCase):
    def inside(self, name):
        script = 'ip link set lo up && exec "$0" -W ignore -m unittest -v test_browser_media.InsideNamespace.%s' % name
        r = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable], cwd=HERE,
                           env={**os.environ, "WEBIMS_NETNS": "1"}, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout[-8000:])
        self.assertIn("OK", r.stdout.splitlines()[-1] if r.stdout.strip() else "", r.stdout[-8000:])

    def test_a_wic_calls_a_phone_with_audio_both_ways_and_dtmf(self):
        self.inside("test_a_wic_calls_a_phone_with_audio_both_ways_and_dtmf")

    def test_a_phone_calls_the_wic_which_answers(self):
        self.inside("test_a_phone_calls_the_wic_which_answers")

    def test_a_phone_calls_without_an_offer_and_the_wic_offers(self):
        self.inside("test_a_phone_calls_without_an_offer_and_the_wic_offers")

    def test_two_browsers_call_each_other_with_opus(self):
        self.inside("test_two_browsers_call_each_other_with_opus")

    def test_hanging_up_while_it_rings_and_rejecting(self):
        self.inside("test_hanging_up_while_it_rings_and_rejecting")


class PhoneMedia:
    """The SIP phone's RTP end: counts what arrives (by payload type) and sends each packet
    back to where it came from, so the browser hears the phone (an echo)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.packets = {}
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while self.running:
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) >= 12 and data[0] >> 6 == 2:
                payload_type = data[1] & 0x7F
                # An RFC 4733 event is 4 bytes of payload after the 12-byte header.
                kind = "event" if len(data) == 16 and payload_type not in (0, 8) else payload_type
                self.packets[kind] = self.packets.get(kind, 0) + 1
                self.sock.sendto(data, peer)

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


@unittest.skipUnless(INSIDE, "runs inside its own network namespace (MediaInBrowserTests starts it)")
class InsideNamespace(CallHelpers, unittest.TestCase):
    def setUp(self):
        from selenium.webdriver.common.by import By
        import browser
        self.By, self.browser = By, browser
        self.server = Server("--flow-close-grace", "0", "--media-ports", "30000-30199")
        self.addCleanup(self.server.stop)
        for user in ("phil", "walt"):
            self.server.cli("subscriber", "add", "--impi", "%s@ims.example.com" % user, "--impu",
                            "sip:%s@ims.example.com" % user, "--password", "%s-pw" % user)
        self.server.cli("account", "add", "--username", "walt", "--password", "walt-web-pw", "--impi",
                        "walt@ims.example.com")
        self.ng = ngcontrol.ng_port(self.server.log)
        self.assertTrue(self.ng, self.server.log)

    # --- the page

    def page(self, user, password):
        driver = self.browser.chromium(self.server, media=True)
        self.addCleanup(driver.quit)
        driver.get(self.server.wwsf + "/")
        driver.find_element(self.By.ID, "username").send_keys(user)
        driver.find_element(self.By.ID, "password").send_keys(password)
        driver.find_element(self.By.ID, "login-button").click()
        self.wait_text(driver, "state", "registered")
        return driver

    def text(self, driver, element_id):
        return driver.find_element(self.By.ID, element_id).text

    def wait_text(self, driver, element_id, text, timeout=20):
        ok = wait_for(lambda: self.text(driver, element_id) == text, timeout=timeout, interval=0.2)
        self.assertTrue(ok, "%s is %r, not %r; error %r; browser log %s" % (
            element_id, self.text(driver, element_id), text, self.text(driver, "error"),
            [e["message"] for e in driver.get_log("browser")][-10:]))

    def packets_in(self, driver):
        value = driver.find_element(self.By.ID, "call-stats").get_attribute("data-packets")
        return int(value or 0)

    def wait_audio(self, driver, at_least=50, timeout=20):
        ok = wait_for(lambda: self.packets_in(driver) >= at_least, timeout=timeout, interval=0.3)
        self.assertTrue(ok, "only %d RTP packets reached the browser (%s)" % (
            self.packets_in(driver), self.text(driver, "call-stats")))

    def click(self, driver, element_id):
        driver.find_element(self.By.ID, element_id).click()

    def dial(self, driver, target):
        box = driver.find_element(self.By.ID, "dial-target")
        box.clear()
        box.send_keys(target)
        self.click(driver, "call-button")

    def assertNoMediaLeft(self):
        ok = wait_for(lambda: not ngcontrol.calls(self.ng), timeout=8, interval=0.2)
        self.assertTrue(ok, "media sessions left in rtpengine: %s" % ngcontrol.calls(self.ng))

    # --- the tests

    def test_a_wic_calls_a_phone_with_audio_both_ways_and_dtmf(self):
        media = PhoneMedia()
        self.addCleanup(media.close)
        port = self.phone("phil")
        uas = sipp(None, os.path.join(SCENARIOS, "uas-media-port.xml"), "-d", "300", "-key", "media",
                   str(media.port), port=port, background=True)
        self.addCleanup(uas.kill)
        d = self.page(self.server.demo_user, self.server.demo_password)
        self.dial(d, "phil")
        self.wait_text(d, "call-state", "in call")
        # The browser hears the phone (its echo of the browser's own audio): a second of
        # 20 ms frames, each of which reached the phone first.
        self.wait_audio(d)
        self.assertGreaterEqual(media.packets.get(8, 0), 50, "PCMA at the phone: %s" % media.packets)
        sessions = ngcontrol.calls(self.ng)
        self.assertEqual(len(sessions), 1, sessions)  # the WIC's side only: the phone is IMS
        self.assertTrue(sessions[0].endswith("~orig"), sessions)
        if os.environ.get("WEBIMS_SCREENSHOT"):  # docs/demo-call.png: a call in progress
            d.execute_script("document.getElementById('status-panel').scrollIntoView()")
            time.sleep(2)
            d.save_screenshot(os.environ["WEBIMS_SCREENSHOT"])
        for key in d.find_elements(self.By.CSS_SELECTOR, "#keypad button")[:3]:  # 1 2 3
            key.click()
        ok = wait_for(lambda: media.packets.get("event", 0) >= 3, timeout=10, interval=0.2)
        self.assertTrue(ok, "no RFC 4733 events at the phone: %s" % media.packets)
        self.click(d, "hangup-button")
        self.wait_text(d, "call-state", "ended: hung up")
        self.assertEqual(uas.wait(20), 0, "the SIPp phone's side failed")
        self.assertNoMediaLeft()

    def phone_calls_the_page(self, scenario, seconds):
        """Phil's SIPp phone calls the demo page with `scenario`, its RTP end an echo; the page
        answers, audio goes both ways, and the phone hangs up after `seconds`."""
        media = PhoneMedia()
        self.addCleanup(media.close)
        d = self.page(self.server.demo_user, self.server.demo_password)
        port = self.phone("phil")
        uac = sipp(self.server.scscf, os.path.join(SCENARIOS, scenario), "-s", "phil", "-au",
                   "phil@ims.example.com", "-ap", "phil-pw", "-key", "ruri", self.server.demo_impu, "-key", "media",
                   str(media.port), "-d", str(seconds * 1000), port=port, background=True)
        self.addCleanup(uac.kill)
        self.wait_text(d, "call-state", "incoming call")
        self.assertEqual(self.text(d, "caller"), "sip:phil@ims.example.com")
        self.click(d, "answer-button")
        self.wait_text(d, "call-state", "in call")
        self.wait_audio(d)
        self.assertGreaterEqual(media.packets.get(8, 0), 50, "PCMA at the phone: %s" % media.packets)
        self.wait_text(d, "call-state", "ended: the other side hung up", timeout=20)
        self.assertEqual(uac.wait(20), 0, "the SIPp caller's side failed")
        self.assertNoMediaLeft()

    def test_a_phone_calls_the_wic_which_answers(self):
        self.phone_calls_the_page("uac-media-port.xml", 6)

    def test_a_phone_calls_without_an_offer_and_the_wic_offers(self):
        """RFC 3264 §4: the phone's INVITE has no SDP; the page's answer carries the browser's
        offer (plain RTP at the phone, which checks), the phone's answer comes in its ACK."""
        self.phone_calls_the_page("uac-late-offer-port.xml", 5)

    def test_two_browsers_call_each_other_with_opus(self):
        caller = self.page(self.server.demo_user, self.server.demo_password)
        callee = self.page("walt", "walt-web-pw")
        self.dial(caller, "walt")
        self.wait_text(callee, "call-state", "incoming call")
        self.click(callee, "answer-button")
        self.wait_text(caller, "call-state", "in call")
        self.wait_text(callee, "call-state", "in call")
        self.wait_audio(caller)
        self.wait_audio(callee)
        self.assertEqual(len(ngcontrol.calls(self.ng)), 2, "one gateway session per side of the eP-CSCF")
        codec = caller.execute_script("""
            return document.querySelector('#call-stats').dataset.codec || null;""")
        self.assertEqual(codec, "audio/opus")
        self.click(callee, "hangup-button")
        self.wait_text(caller, "call-state", "ended: the other side hung up")
        self.wait_text(callee, "call-state", "ended: hung up")
        self.assertNoMediaLeft()

    def test_hanging_up_while_it_rings_and_rejecting(self):
        caller = self.page(self.server.demo_user, self.server.demo_password)
        callee = self.page("walt", "walt-web-pw")
        # The caller gives up while it rings: CANCEL, 487.
        self.dial(caller, "walt")
        self.wait_text(callee, "call-state", "incoming call")
        self.wait_text(caller, "call-state", "ringing…")
        self.click(caller, "hangup-button")
        self.wait_text(callee, "call-state", "ended: cancelled (487)")
        self.assertNoMediaLeft()
        # The callee refuses: 486 Busy Here reaches the caller.
        self.dial(caller, "walt")
        self.wait_text(callee, "call-state", "incoming call")
        self.click(callee, "reject-button")
        self.wait_text(caller, "call-state", "ended: Busy Here (486)")
        self.assertNoMediaLeft()


if __name__ == "__main__":
    unittest.main()
