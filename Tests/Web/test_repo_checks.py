"""Issue 30: the checks that keep Package.swift honest fail, with a message that names the
fix, when what they guard breaks."""
import os
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script, *args):
    return subprocess.run([os.path.join(ROOT, "scripts", script), *args], capture_output=True, text=True,
                          timeout=300)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class RepoCheckTests(unittest.TestCase):
    def test_this_package_passes_both(self):
        result = run("check-imports", ROOT)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        result = run("check-internal-modules", ROOT)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_an_undeclared_import_and_an_unused_declaration_are_reported(self):
        d = tempfile.mkdtemp(prefix="imports-")
        write(os.path.join(d, "Package.swift"), """// swift-tools-version: 6.1
import PackageDescription
let package = Package(name: "p", targets: [
    .target(name: "C"), .target(name: "B", dependencies: ["C"]), .target(name: "A", dependencies: ["B"]),
    .target(name: "D", dependencies: ["C"])])
""")
        write(os.path.join(d, "Sources/C/C.swift"), "public func c() {}\n")
        write(os.path.join(d, "Sources/B/B.swift"), "import C\npublic func b() { c() }\n")
        write(os.path.join(d, "Sources/A/A.swift"), "import B\nimport C\npublic func a() { b(); c() }\n")
        write(os.path.join(d, "Sources/D/D.swift"), "public func d() {}\n")
        result = run("check-imports", d)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("A: imports C (Sources/A/A.swift) but does not declare the target C", result.stdout)
        self.assertIn("D: declares C but imports it nowhere", result.stdout)

    def test_a_vanished_internal_symbol_names_the_file_to_change(self):
        d = tempfile.mkdtemp(prefix="internal-")
        write(os.path.join(d, "Sources/SIPTransport/WebSocket/LeanTLS.swift"),
              "import CNIOBoringSSL\nlet s = SSL_new(ctx)\nSSL_gone_away(s)\n")
        checkouts = os.path.join(d, "checkouts")
        write(os.path.join(checkouts, "swift-nio-ssl/Sources/CNIOBoringSSL/include/ssl.h"), "SSL *SSL_new(SSL_CTX *);\n")
        result = run("check-internal-modules", d, checkouts)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("no longer declares SSL_gone_away, which Sources/SIPTransport/WebSocket/LeanTLS.swift uses",
                      result.stdout)
        # The whole module gone: said as such.
        write(os.path.join(d, "Sources/Storage/SQLite/SQLiteBindingWriter.swift"), "sqlite_nio_sqlite3_step(s)\n")
        result = run("check-internal-modules", d, checkouts)
        self.assertIn("sqlite-nio has no module VaporCSQLite", result.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
