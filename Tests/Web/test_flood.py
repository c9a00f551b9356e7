"""Issue 4: garbage and connection floods from loopback, and a burst of 5,000
simultaneous TLS handshakes, against the real `webims serve`; legitimate WICs keep
registering throughout and the server's memory comes back down afterwards. Bounded in
count and time; loopback only."""
import asyncio
import os
import random
import resource
import socket
import ssl
import time
import unittest

import sipws
from harness import Server, wait_for


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class FloodTests(unittest.TestCase):
    def setUp(self):
        raise_fd_limit()
        self.server = Server("--max-connections-per-address", "300", "--log-level", "warning")
        self.addCleanup(self.server.stop)
        self.port = int(self.server.epcscf.rsplit(":", 1)[1])

    def legit_register(self):
        token = self.server.cli("token", "issue", "--account", self.server.demo_user).strip()
        wic = sipws.WIC(self.server.epcscf, self.server.wwsf, self.server.ca, self.server.demo_impu)
        try:
            return wic.register("Bearer " + token).status
        finally:
            wic.close()

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=self.server.ca)
        ctx.check_hostname = False
        return ctx

    async def open_many(self, count, addresses, timeout=60, payload=None, use_tls=True):
        """Opens `count` connections spread over source `addresses`; returns (opened, writers)."""
        ctx = self.tls_context() if use_tls else None
        semaphore = asyncio.Semaphore(2000)

        async def one(i):
            async with semaphore:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", self.port, ssl=ctx, local_addr=(addresses[i % len(addresses)], 0),
                        server_hostname="localhost" if ctx else None), timeout)
                    if payload:
                        writer.write(payload(i))
                        await writer.drain()
                    return writer
                except (OSError, asyncio.TimeoutError, ssl.SSLError):
                    return None

        writers = await asyncio.gather(*(one(i) for i in range(count)))
        return [w for w in writers if w]

    def test_garbage_and_connection_flood(self):
        pid = self.server.process.pid
        self.assertEqual(self.legit_register(), 200)
        # Baseline after a warm-up burst (allocator arenas and caches sized once).
        loop = asyncio.new_event_loop()
        for w in loop.run_until_complete(self.open_many(1000, ["127.0.4.%d" % n for n in range(1, 5)])):
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
        time.sleep(11)
        baseline = rss_kib(pid)

        async def flood():
            # Garbage instead of TLS, from one address.
            garbage = await self.open_many(
                300, ["127.0.0.2"], use_tls=False, payload=lambda i: os.urandom(random.randint(1, 8192)))
            # 1,500 TLS connections held open from ten addresses, a third of them then
            # sending garbage instead of an HTTP upgrade.
            held = await self.open_many(1500, ["127.0.1.%d" % n for n in range(1, 11)])
            for w in held[::3]:
                w.write(b"\x16\x03\x01 not http at all\r\n\r\n" + os.urandom(512))
            # One address over its cap: the surplus is refused at once.
            capped = await self.open_many(400, ["127.0.2.1"])
            return garbage, held, capped

        loop = asyncio.new_event_loop()
        garbage, held, capped = loop.run_until_complete(flood())
        self.assertGreaterEqual(len(held), 1400, "the server stopped accepting TLS connections")
        # The address over its cap got at most its 300; the rest were refused before TLS.
        self.assertLessEqual(len(capped), 300)
        self.assertGreaterEqual(len(capped), 250)
        # While the flood holds its connections, a legitimate WIC still registers.
        self.assertEqual(self.legit_register(), 200)
        peak = rss_kib(pid)

        for w in garbage + held + capped:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
        self.assertEqual(self.legit_register(), 200)
        # Memory returns towards the baseline once the flood is gone.
        settled = wait_for(lambda: rss_kib(pid) <= baseline * 1.15 + 8 * 1024, timeout=20)
        print("\nflood: RSS baseline %d KiB, peak %d KiB, after %d KiB" % (baseline, peak, rss_kib(pid)))
        self.assertTrue(settled, "RSS stayed at %d KiB (baseline %d, peak %d)" % (rss_kib(pid), baseline, peak))
        self.assertIsNone(self.server.process.poll(), "the server died")

    def test_5000_simultaneous_tls_handshakes(self):
        async def burst():
            start = time.time()
            writers = await self.open_many(5000, ["127.0.3.%d" % n for n in range(1, 41)], timeout=90)
            return writers, time.time() - start

        loop = asyncio.new_event_loop()
        writers, seconds = loop.run_until_complete(burst())
        print("\nburst: %d of 5000 TLS handshakes completed in %.1f s" % (len(writers), seconds))
        self.assertGreaterEqual(len(writers), 4900)
        # Not stalled: a legitimate WIC registers while they are all open.
        self.assertEqual(self.legit_register(), 200)
        for w in writers:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
        self.assertIsNone(self.server.process.poll(), "the server died")
        self.assertEqual(self.legit_register(), 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
