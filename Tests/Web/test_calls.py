"""Issue 28: calls through the eP-CSCF and the S-CSCF of the real `webims serve`. WICs are
sipws.CallingWIC over WSS with a WAF token; SIP phones are SIPp (Tests/Interop/calls),
registered straight at the S-CSCF with Digest. These run with `--media-gateway none`, where SDP
passes through untouched; test_call_media.py has the same calls through the media gateway."""
import os
import shutil
import subprocess
import time
import unittest

import sipws
from harness import ROOT, ServerTestCase, free_port, wait_for

SCENARIOS = os.path.join(ROOT, "Tests", "Interop", "calls")


def sipp(scscf, scenario, *args, port=None, background=False):
    """Runs SIPp (one call) against the S-CSCF; a Popen when `background`, else the exit code."""
    command = ["sipp", *([scscf] if scscf else []), "-sf", scenario, "-t", "u1", "-i", "127.0.0.1", "-m", "1",
               "-timeout", "20", "-timeout_error", *(["-p", str(port)] if port else []), *args]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd="/tmp")
    if background:
        return process
    return process.wait(40)


class CallHelpers:
    """What the call suites share: phones phil and pam, walt with a web account too, WICs
    registered with a token, SIPp phones registered at the S-CSCF, a CANCEL from a WIC."""

    @classmethod
    def provision(cls, s):
        for user in ("phil", "pam", "walt"):
            s.cli("subscriber", "add", "--impi", "%s@ims.example.com" % user, "--impu",
                  "sip:%s@ims.example.com" % user, "--password", "%s-pw" % user)
        s.cli("account", "add", "--username", "walt", "--password", "walt-web-pw", "--impi", "walt@ims.example.com")

    def wic(self, account=None, impu=None):
        s = self.server
        token = s.cli("token", "issue", "--account", account or s.demo_user).strip()
        w = sipws.CallingWIC(s.epcscf, s.wwsf, s.ca, impu or s.demo_impu)
        self.addCleanup(w.close)
        r = w.register("Bearer " + token)
        self.assertEqual(r.status, 200, r.text)
        return w

    def phone(self, user):
        """Registers `user`'s phone: the port its SIPp waits on for calls."""
        port = free_port()
        code = sipp(self.server.scscf, os.path.join(SCENARIOS, "register.xml"), "-s", user, "-au",
                    "%s@ims.example.com" % user, "-ap", "%s-pw" % user, "-key", "contact_port", str(port))
        self.assertEqual(code, 0, "SIPp REGISTER of %s" % user)
        return port

    def cancelled_call(self, caller, callee, body):
        """The caller gives up while the callee (walt) rings: CANCEL, 200, 487. Returns the Call-ID."""
        call_id, tag = sipws.rand(16), sipws.rand(8)
        target = "sip:walt@ims.example.com"
        invite_text = caller.request("INVITE", target, call_id, 1, tag, target, body=body)
        invite = callee.next_request("INVITE")
        callee.answer(invite, 180, "Ringing", to_tag="w2")
        self.assertEqual(caller.receive().status, 100)
        self.assertEqual(caller.receive().status, 180)
        self.ringing(call_id)
        via = invite_text.split("\r\n")[1]
        caller.ws.send("CANCEL %s SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: <%s>;tag=%s\r\nTo: <%s>\r\n"
                       "Call-ID: %s\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
                       % (target, via, caller.impu, tag, target, call_id))
        cancel = callee.next_request("CANCEL")
        callee.answer(cancel, 200, "OK", to_tag="w2")
        callee.answer(invite, 487, "Request Terminated", to_tag="w2")
        self.assertEqual(sorted([caller.receive().status, caller.receive().status]), [200, 487])
        return call_id

    def ringing(self, call_id):
        """While the callee rings (a hook for what else a suite checks then)."""


@unittest.skipUnless(shutil.which("sipp"), "needs sipp (sip-tester)")
class CallTests(CallHelpers, ServerTestCase):
    server_args = ("--media-gateway", "none")

    def test_a_wic_calls_a_phone(self):
        port = self.phone("phil")
        uas = sipp(None, os.path.join(SCENARIOS, "uas.xml"), "-d", "100", port=port, background=True)
        self.addCleanup(uas.kill)
        time.sleep(0.3)
        w = self.wic()
        responses, dialog = w.invite("sip:phil@ims.example.com")
        final = responses[-1]
        self.assertEqual(final.status, 200, final.text)
        self.assertIn(180, [r.status for r in responses])
        self.assertEqual(final.body, sipws.SDP_ANSWER)  # the phone's SDP, untouched
        # Record-Route: the S-CSCF on top, the eP-CSCF naming our flow at the bottom (the
        # first hop of our route set).
        routes = [r for v in final.all("record-route") for r in v.split(",")]
        self.assertGreaterEqual(len(routes), 2, final.text)
        self.assertRegex(routes[-1], r"<sip:fl-[^@]+@")
        self.assertNotIn("fl-", routes[0])
        w.ack(dialog)
        bye = w.bye(dialog)
        self.assertEqual(bye.status, 200, bye.text)
        # The phone checked PAI (our IMPU, asserted by the eP-CSCF), P-Called-Party-ID,
        # Record-Route and the SDP, and saw ACK and BYE: its exit code says so.
        self.assertEqual(uas.wait(30), 0, "the SIPp phone's side of the call failed")

    def test_a_phone_calls_a_wic(self):
        self.phone("pam")
        w = self.wic()
        pam_port = free_port()
        # pam's calling phone registers the port it calls from, as a phone would.
        code = sipp(self.server.scscf, os.path.join(SCENARIOS, "register.xml"), "-s", "pam", "-au",
                    "pam@ims.example.com", "-ap", "pam-pw", "-key", "contact_port", str(pam_port))
        self.assertEqual(code, 0)
        uac = sipp(self.server.scscf, os.path.join(SCENARIOS, "uac.xml"), "-s", "pam", "-au", "pam@ims.example.com",
                   "-ap", "pam-pw", "-key", "ruri", self.server.demo_impu, port=pam_port, background=True)
        self.addCleanup(uac.kill)
        invite = w.next_request("INVITE", timeout=20)
        self.assertEqual(invite.header("p-asserted-identity"), "<sip:pam@ims.example.com>")
        self.assertEqual(invite.header("p-called-party-id"), "<%s>" % self.server.demo_impu)
        self.assertEqual(invite.body, sipws.SDP_OFFER)
        self.assertIsNone(invite.header("route"), "our Route entry is consumed by the eP-CSCF")
        w.answer(invite, 180, "Ringing", to_tag="wic1")
        w.answer(invite, 200, "OK", to_tag="wic1", body=sipws.SDP_ANSWER)
        ack = w.next_request("ACK")
        self.assertEqual(ack.header("call-id"), invite.header("call-id"))
        bye = w.next_request("BYE")
        w.answer(bye, 200, "OK")
        self.assertEqual(uac.wait(30), 0, "the SIPp caller's side of the call failed")

    def test_two_wics_call_each_other_and_the_callee_hangs_up(self):
        caller = self.wic()
        callee = self.wic("walt", "sip:walt@ims.example.com")
        caller_thread_result = {}

        import threading

        def call():
            caller_thread_result["invite"] = caller.invite("sip:walt@ims.example.com")

        t = threading.Thread(target=call)
        t.start()
        invite = callee.next_request("INVITE")
        self.assertEqual(invite.header("p-asserted-identity"), "<%s>" % self.server.demo_impu)
        callee.answer(invite, 180, "Ringing", to_tag="w1")
        callee.answer(invite, 200, "OK", to_tag="w1", body=sipws.SDP_ANSWER)
        t.join(15)
        responses, dialog = caller_thread_result["invite"]
        self.assertEqual([r.status for r in responses if r.status > 100], [180, 200])
        self.assertEqual(responses[-1].body, sipws.SDP_ANSWER)
        caller.ack(dialog)
        ack = callee.next_request("ACK")
        self.assertEqual(ack.header("call-id"), dialog["call_id"])
        # The callee hangs up: its BYE goes eP-CSCF, S-CSCF, eP-CSCF to the caller's flow.
        result = {}
        t = threading.Thread(target=lambda: result.update(bye=callee.bye_as_callee(invite, "w1")))
        t.start()
        bye = caller.next_request("BYE")
        caller.answer(bye, 200, "OK")
        t.join(15)
        self.assertEqual(result["bye"].status, 200, result["bye"].text)

    def test_a_cancelled_call_between_wics(self):
        self.cancelled_call(self.wic(), self.wic("walt", "sip:walt@ims.example.com"), sipws.SDP_OFFER)

    def test_a_phone_calling_a_closed_flow_gets_430(self):
        w = self.wic()
        w.close()
        time.sleep(0.5)
        port = free_port()
        code = sipp(self.server.scscf, os.path.join(SCENARIOS, "register.xml"), "-s", "phil", "-au",
                    "phil@ims.example.com", "-ap", "phil-pw", "-key", "contact_port", str(port))
        self.assertEqual(code, 0)
        scenario = os.path.join(self.server.data_dir, "uac-430.xml")
        with open(os.path.join(SCENARIOS, "uac-refused.xml.in")) as f:
            text = f.read().replace("CODE", "430")
        with open(scenario, "w") as f:
            f.write(text)
        # The binding lasts the flow-close grace; its flow is gone: 430 Flow Failed.
        code = sipp(self.server.scscf, scenario, "-s", "phil", "-au", "phil@ims.example.com", "-ap", "phil-pw",
                    "-key", "ruri", self.server.demo_impu, port=port)
        self.assertEqual(code, 0, "a call to a closed flow was not answered 430")

    def test_z_a_revoked_tokens_flow_can_no_longer_call(self):
        s = self.server
        w = self.wic("walt", "sip:walt@ims.example.com")
        s.cli("token", "revoke", "--account", "walt")

        def refused():
            responses, _ = w.invite("sip:nobody@ims.example.com")
            return responses[-1] if responses[-1].status == 401 else None

        r = wait_for(refused, timeout=12, interval=1)
        self.assertTrue(r, "an INVITE on a revoked token's flow was still forwarded")
        self.assertIn('error="invalid_token"', r.header("www-authenticate"))
        responses, _ = w.invite("sip:nobody@ims.example.com")
        self.assertEqual(responses[-1].status, 403)


if __name__ == "__main__":
    unittest.main()
