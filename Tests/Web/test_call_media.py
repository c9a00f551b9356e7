"""Issue 29: calls through the eP-CSCF's media gateway — the rtpengine `webims serve` starts
itself. What the SDP looks like on each side (WebRTC towards the WIC, plain RTP towards IMS),
which media sessions the gateway holds during a call (asked over its ng port), and that none
is left once the call is over, however it ended. WICs are sipws.CallingWIC over WSS with a
WAF token; phones are SIPp registered at the S-CSCF. Media itself (Chromium) is in
test_browser_media.py."""
import os
import shutil
import threading
import time
import unittest

import ngcontrol
import sipws
from harness import ServerTestCase, free_port, wait_for
from test_calls import SCENARIOS, CallHelpers, sipp


@unittest.skipUnless(shutil.which("sipp") and shutil.which("rtpengine"), "needs sipp and rtpengine")
class MediaCallTests(CallHelpers, ServerTestCase):
    # A closed WIC's bindings go at once, so each test's callee is its one live contact.
    server_args = ("--flow-close-grace", "0")

    @classmethod
    def provision(cls, s):
        super().provision(s)
        cls.ng = ngcontrol.ng_port(s.log)
        assert cls.ng, "serve did not start its rtpengine:\n" + s.log

    def media_sessions(self):
        """The gateway's sessions, a terminating one named without its flow (`<Call-ID>~term`)."""
        return sorted(c.split("~term~")[0] + "~term" if "~term~" in c else c for c in ngcontrol.calls(self.ng))

    def assertNoMediaLeft(self):
        left = wait_for(lambda: not self.media_sessions(), timeout=5, interval=0.1)
        self.assertTrue(left, "media sessions outlived their dialog: %s" % self.media_sessions())

    def test_a_wic_calls_a_phone(self):
        port = self.phone("phil")
        uas = sipp(None, os.path.join(SCENARIOS, "uas-media.xml"), "-d", "100", port=port, background=True)
        self.addCleanup(uas.kill)
        time.sleep(0.3)
        w = self.wic()
        responses, dialog = w.invite("sip:phil@ims.example.com", body=sipws.WEBRTC_OFFER)
        final = responses[-1]
        self.assertEqual(final.status, 200, final.text)
        # The phone answered plain RTP; the WIC gets what a browser needs, from the gateway.
        self.assertTrue(sipws.is_webrtc_sdp(final.body), final.body)
        self.assertNotIn("41000", final.body)
        self.assertEqual(self.media_sessions(), [dialog["call_id"] + "~orig"])
        w.ack(dialog)
        self.assertEqual(w.bye(dialog).status, 200)
        # The phone checked its offer was plain RTP without the browser's ICE and DTLS.
        self.assertEqual(uas.wait(30), 0, "the SIPp phone's side of the call failed")
        self.assertNoMediaLeft()

    def test_a_phone_calls_a_wic(self):
        w = self.wic()
        pam_port = self.phone("pam")
        uac = sipp(self.server.scscf, os.path.join(SCENARIOS, "uac-media.xml"), "-s", "pam", "-au",
                   "pam@ims.example.com", "-ap", "pam-pw", "-key", "ruri", self.server.demo_impu, port=pam_port,
                   background=True)
        self.addCleanup(uac.kill)
        invite = w.next_request("INVITE", timeout=20)
        # The phone's plain RTP offer reaches the WIC as WebRTC: ICE, DTLS (actpass), rtcp-mux.
        self.assertTrue(sipws.is_webrtc_sdp(invite.body), invite.body)
        self.assertIn("a=setup:actpass", invite.body)
        self.assertIn("PCMA", invite.body)
        w.answer(invite, 180, "Ringing", to_tag="wic1")
        w.answer(invite, 200, "OK", to_tag="wic1", body=sipws.WEBRTC_ANSWER)
        w.next_request("ACK")
        self.assertEqual(self.media_sessions(), [invite.header("call-id") + "~term"])
        bye = w.next_request("BYE")
        w.answer(bye, 200, "OK")
        # The phone checked the answer it got was plain RTP.
        self.assertEqual(uac.wait(30), 0, "the SIPp caller's side of the call failed")
        self.assertNoMediaLeft()

    def call_between_wics(self, caller, callee, body=sipws.WEBRTC_OFFER):
        """Starts a call from `caller` to walt's `callee`; returns (the INVITE it got, a
        function giving the caller's responses and dialog)."""
        result = {}
        t = threading.Thread(target=lambda: result.update(
            call=caller.invite("sip:walt@ims.example.com", body=body)))
        t.start()

        def outcome():
            t.join(15)
            return result["call"]
        return outcome

    def caller_hangs_up(self, caller, dialog, callee):
        """The caller's BYE, answered by the callee; then no media session is left."""
        result = {}
        t = threading.Thread(target=lambda: result.update(bye=caller.bye(dialog)))
        t.start()
        callee.answer(callee.next_request("BYE"), 200, "OK")
        t.join(15)
        self.assertEqual(result["bye"].status, 200)
        self.assertNoMediaLeft()

    def test_two_wics_have_a_media_session_on_each_side(self):
        caller = self.wic()
        callee = self.wic("walt", "sip:walt@ims.example.com")
        outcome = self.call_between_wics(caller, callee)
        invite = callee.next_request("INVITE")
        self.assertTrue(sipws.is_webrtc_sdp(invite.body), invite.body)
        self.assertIn("opus", invite.body)
        callee.answer(invite, 180, "Ringing", to_tag="w1")
        callee.answer(invite, 200, "OK", to_tag="w1", body=sipws.WEBRTC_ANSWER.replace(
            "SAVPF 8", "SAVPF 111").replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:111 opus/48000/2"))
        responses, dialog = outcome()
        self.assertEqual(responses[-1].status, 200)
        self.assertTrue(sipws.is_webrtc_sdp(responses[-1].body), responses[-1].body)
        call_id = dialog["call_id"]
        # One Call-ID, the eP-CSCF crossed twice: a gateway session for each side.
        self.assertEqual(self.media_sessions(), [call_id + "~orig", call_id + "~term"])
        caller.ack(dialog)
        callee.next_request("ACK")
        result = {}
        t = threading.Thread(target=lambda: result.update(bye=callee.bye_as_callee(invite, "w1")))
        t.start()
        caller.answer(caller.next_request("BYE"), 200, "OK")
        t.join(15)
        self.assertEqual(result["bye"].status, 200)
        self.assertNoMediaLeft()

    def test_a_re_invite_goes_through_the_gateway_on_both_sides(self):
        caller = self.wic()
        callee = self.wic("walt", "sip:walt@ims.example.com")
        outcome = self.call_between_wics(caller, callee)
        invite = callee.next_request("INVITE")
        callee.answer(invite, 200, "OK", to_tag="w5", body=sipws.WEBRTC_ANSWER)
        responses, dialog = outcome()
        caller.ack(dialog)
        callee.next_request("ACK")
        # The caller offers again (a new o= version), in the dialog.
        dialog["cseq"] += 1
        reoffer = sipws.WEBRTC_OFFER.replace(" 2 IN IP4", " 3 IN IP4")
        caller.request("INVITE", dialog["remote"], dialog["call_id"], dialog["cseq"], dialog["from_tag"],
                       dialog["target"], dialog["to_tag"], dialog["routes"], body=reoffer)
        reinvite = callee.next_request("INVITE")
        self.assertEqual(reinvite.header("call-id"), dialog["call_id"])
        self.assertTrue(sipws.is_webrtc_sdp(reinvite.body), reinvite.body)
        self.assertNotEqual(reinvite.body, reoffer, "the re-offer went through the gateway")
        callee.answer(reinvite, 200, "OK", body=sipws.WEBRTC_ANSWER)
        final = caller.receive()
        while final.status < 200:
            final = caller.receive()
        self.assertEqual(final.status, 200, final.text)
        self.assertTrue(sipws.is_webrtc_sdp(final.body), final.body)
        self.assertEqual(self.media_sessions(), [dialog["call_id"] + "~orig", dialog["call_id"] + "~term"])
        caller.ack(dialog)
        callee.next_request("ACK")
        self.caller_hangs_up(caller, dialog, callee)

    def test_a_call_forked_to_two_wics_keeps_the_winners_media(self):
        caller = self.wic()
        first = self.wic("walt", "sip:walt@ims.example.com")
        second = self.wic("walt", "sip:walt@ims.example.com")
        outcome = self.call_between_wics(caller, first)
        invites = [first.next_request("INVITE"), second.next_request("INVITE")]
        call_id = invites[0].header("call-id")
        # One gateway session per branch: two flows, two terminating sessions.
        sessions = ngcontrol.calls(self.ng)
        self.assertEqual(len([c for c in sessions if c.startswith(call_id + "~term~")]), 2, sessions)
        # Both ring (a branch is cancelled once it has answered provisionally, RFC 3261 §9.1).
        first.answer(invites[0], 180, "Ringing", to_tag="f1")
        second.answer(invites[1], 180, "Ringing", to_tag="s1")
        first.answer(invites[0], 200, "OK", to_tag="f1", body=sipws.WEBRTC_ANSWER)
        cancel = second.next_request("CANCEL")
        second.answer(cancel, 200, "OK", to_tag="s1")
        second.answer(invites[1], 487, "Request Terminated", to_tag="s1")
        second.next_request("ACK")
        responses, dialog = outcome()
        self.assertEqual(responses[-1].status, 200)
        caller.ack(dialog)
        first.next_request("ACK")
        # The loser's session went with its 487; the winner's is still there.
        left = wait_for(lambda: len(ngcontrol.calls(self.ng)) == 2, timeout=5, interval=0.1)
        self.assertTrue(left, ngcontrol.calls(self.ng))
        self.assertEqual(self.media_sessions(), [call_id + "~orig", call_id + "~term"])
        self.caller_hangs_up(caller, dialog, first)

    def test_a_late_offer_from_a_wic_to_a_phone(self):
        """RFC 3264 §4: an INVITE without SDP; the phone offers in its 200, the WIC answers in
        the ACK — both through the gateway."""
        port = self.phone("phil")
        uas = sipp(None, os.path.join(SCENARIOS, "uas-late-offer.xml"), "-d", "100", port=port, background=True)
        self.addCleanup(uas.kill)
        time.sleep(0.3)
        w = self.wic()
        responses, dialog = w.invite("sip:phil@ims.example.com", body="")
        final = responses[-1]
        self.assertEqual(final.status, 200, final.text)
        # The phone's plain RTP offer reaches the WIC as WebRTC.
        self.assertTrue(sipws.is_webrtc_sdp(final.body), final.body)
        self.assertIn("a=setup:actpass", final.body)
        self.assertNotIn("41002", final.body)
        w.ack(dialog, body=sipws.WEBRTC_ANSWER)
        leg = dialog["call_id"] + "~orig"
        self.assertEqual(self.media_sessions(), [leg])
        # The answer in the ACK reached the gateway (the WIC's tag joined the phone's there)
        # before the BYE goes, which would otherwise overtake the ACK.
        answered = wait_for(lambda: dialog["from_tag"] in ngcontrol.tags(self.ng, leg), timeout=5, interval=0.05)
        self.assertTrue(answered, ngcontrol.tags(self.ng, leg))
        self.assertEqual(w.bye(dialog).status, 200)
        # The phone checked the answer in the ACK was plain RTP.
        self.assertEqual(uas.wait(30), 0, "the SIPp phone's side of the call failed")
        self.assertNoMediaLeft()

    def test_a_late_offer_between_wics_crosses_both_sides(self):
        caller = self.wic()
        callee = self.wic("walt", "sip:walt@ims.example.com")
        outcome = self.call_between_wics(caller, callee, body="")
        invite = callee.next_request("INVITE")
        self.assertEqual(invite.body, "")
        callee.answer(invite, 200, "OK", to_tag="w6", body=sipws.WEBRTC_OFFER)
        responses, dialog = outcome()
        final = responses[-1]
        self.assertEqual(final.status, 200, final.text)
        # The callee's offer went through the gateway twice: plain RTP between the two sides.
        self.assertTrue(sipws.is_webrtc_sdp(final.body), final.body)
        self.assertIn("opus", final.body)
        self.assertNotIn("50000", final.body)  # the callee's own candidate port stays on its side
        answer = sipws.WEBRTC_ANSWER.replace("SAVPF 8", "SAVPF 111").replace(
            "a=rtpmap:8 PCMA/8000", "a=rtpmap:111 opus/48000/2")
        caller.ack(dialog, body=answer)
        ack = callee.next_request("ACK")
        self.assertTrue(sipws.is_webrtc_sdp(ack.body), ack.body)
        self.assertIn("opus", ack.body)
        self.assertNotIn("50002", ack.body)  # the caller's own candidate port stays on its side
        call_id = dialog["call_id"]
        self.assertEqual(self.media_sessions(), [call_id + "~orig", call_id + "~term"])
        self.caller_hangs_up(caller, dialog, callee)

    def test_a_rejected_call_leaves_no_media(self):
        caller = self.wic()
        callee = self.wic("walt", "sip:walt@ims.example.com")
        outcome = self.call_between_wics(caller, callee)
        invite = callee.next_request("INVITE")
        self.assertEqual(len(self.media_sessions()), 2)
        callee.answer(invite, 486, "Busy Here", to_tag="w2")
        callee.next_request("ACK")
        responses, _ = outcome()
        self.assertEqual(responses[-1].status, 486)
        self.assertNoMediaLeft()

    def test_a_cancelled_call_leaves_no_media(self):
        self.cancelled_call(self.wic(), self.wic("walt", "sip:walt@ims.example.com"), sipws.WEBRTC_OFFER)
        self.assertNoMediaLeft()

    def ringing(self, call_id):
        self.assertEqual(self.media_sessions(), [call_id + "~orig", call_id + "~term"])

    def test_an_offer_with_no_codec_a_browser_speaks_is_488(self):
        caller = self.wic()
        self.wic("walt", "sip:walt@ims.example.com")
        g729 = sipws.SDP_OFFER.replace("RTP/AVP 8", "RTP/AVP 18").replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000")
        responses, _ = caller.invite("sip:walt@ims.example.com", body=g729)
        final = responses[-1]
        self.assertEqual(final.status, 488, final.text)
        warning = final.header("warning") or ""
        self.assertTrue(warning.startswith("305 "), final.text)
        self.assertIn("g729", warning)
        self.assertIn("does not transcode", warning)
        self.assertNoMediaLeft()

    def test_malformed_sdp_is_488_with_the_reason(self):
        caller = self.wic()
        responses, _ = caller.invite("sip:phil@ims.example.com", body="v=0\r\nthis is not SDP\r\n")
        final = responses[-1]
        self.assertEqual(final.status, 488, final.text)
        self.assertIn("Malformed SDP", final.header("warning") or "")
        self.assertNoMediaLeft()

    def test_a_lost_flow_takes_its_media_with_it(self):
        caller = self.wic()
        callee = self.wic("walt", "sip:walt@ims.example.com")
        outcome = self.call_between_wics(caller, callee)
        invite = callee.next_request("INVITE")
        callee.answer(invite, 200, "OK", to_tag="w4", body=sipws.WEBRTC_ANSWER)
        responses, dialog = outcome()
        caller.ack(dialog)
        callee.next_request("ACK")
        call_id = dialog["call_id"]
        self.assertEqual(self.media_sessions(), [call_id + "~orig", call_id + "~term"])
        caller.close()  # the caller's browser tab is gone
        gone = wait_for(lambda: self.media_sessions() == [call_id + "~term"], timeout=5, interval=0.1)
        self.assertTrue(gone, self.media_sessions())
        # The callee hangs up: its side's session goes too (the caller's flow answers 430).
        self.assertEqual(callee.bye_as_callee(invite, "w4").status, 430)
        self.assertNoMediaLeft()


@unittest.skipUnless(shutil.which("sipp"), "needs sipp")
class SilentGatewayTests(ServerTestCase):
    # Nothing listens there: every ng request goes unanswered.
    server_args = ("--media-gateway", "ng://127.0.0.1:%d" % free_port())

    def test_a_gateway_that_does_not_answer_is_503_with_retry_after(self):
        s = self.server
        token = s.cli("token", "issue", "--account", s.demo_user).strip()
        w = sipws.CallingWIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
        self.addCleanup(w.close)
        self.assertEqual(w.register("Bearer " + token).status, 200)
        self.assertIn("eIMS-AGW rtpengine at 127.0.0.1", s.log)
        responses, _ = w.invite(s.demo_impu, body=sipws.WEBRTC_OFFER)
        final = responses[-1]
        self.assertEqual(final.status, 503, final.text)
        self.assertIsNotNone(final.header("retry-after"), final.text)
        self.assertIn("Media gateway unavailable", final.header("warning") or "")


if __name__ == "__main__":
    unittest.main()
