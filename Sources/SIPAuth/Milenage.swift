import Crypto
import _CryptoExtras

/// The 3GPP authentication functions f1–f5, f1*, f5* (TS 35.206), keyed by a subscriber's
/// K and OPc. All inputs and outputs are raw bytes.
public struct Milenage: Sendable {
    let key: SymmetricKey
    let opc: [UInt8]

    public enum Failure: Error, Sendable { case badLength }

    /// `k` and `opc` are 16 bytes each.
    public init(k: [UInt8], opc: [UInt8]) throws(Failure) {
        guard k.count == 16, opc.count == 16 else { throw .badLength }
        key = SymmetricKey(data: k)
        self.opc = opc
    }

    /// OPc = E_K(OP) ⊕ OP (TS 35.206 §4.1).
    public static func opc(k: [UInt8], op: [UInt8]) throws(Failure) -> [UInt8] {
        guard k.count == 16, op.count == 16 else { throw .badLength }
        return xor(encrypt(op, SymmetricKey(data: k)), op)
    }

    /// f1 and f1*: MAC-A and MAC-S, 8 bytes each.
    public func f1(rand: [UInt8], sqn: [UInt8], amf: [UInt8]) throws(Failure) -> (macA: [UInt8], macS: [UInt8]) {
        guard rand.count == 16, sqn.count == 6, amf.count == 2 else { throw .badLength }
        let temp = encrypt(xor(rand, opc), key)
        let in1 = sqn + amf + sqn + amf
        // OUT1 = E_K(TEMP ⊕ rot(IN1 ⊕ OPc, r1) ⊕ c1) ⊕ OPc, r1 = 64, c1 = 0.
        let out1 = xor(encrypt(xor(temp, rotate(xor(in1, opc), byBytes: 8)), key), opc)
        return (Array(out1[0..<8]), Array(out1[8..<16]))
    }

    /// f2–f5: RES (8 bytes), CK, IK (16 bytes) and AK (6 bytes).
    public func f2345(rand: [UInt8]) throws(Failure) -> (res: [UInt8], ck: [UInt8], ik: [UInt8], ak: [UInt8]) {
        guard rand.count == 16 else { throw .badLength }
        let temp = encrypt(xor(rand, opc), key)
        let out2 = output(temp, rotateBytes: 0, constant: 1)
        let out3 = output(temp, rotateBytes: 4, constant: 2)
        let out4 = output(temp, rotateBytes: 8, constant: 4)
        return (Array(out2[8..<16]), out3, out4, Array(out2[0..<6]))
    }

    /// f5*: AK for re-synchronisation (6 bytes).
    public func f5star(rand: [UInt8]) throws(Failure) -> [UInt8] {
        guard rand.count == 16 else { throw .badLength }
        let temp = encrypt(xor(rand, opc), key)
        return Array(output(temp, rotateBytes: 12, constant: 8)[0..<6])
    }

    /// OUTn = E_K(rot(TEMP ⊕ OPc, rn) ⊕ cn) ⊕ OPc, with cn in the last byte.
    private func output(_ temp: [UInt8], rotateBytes: Int, constant: UInt8) -> [UInt8] {
        var block = rotate(xor(temp, opc), byBytes: rotateBytes)
        block[15] ^= constant
        return xor(encrypt(block, key), opc)
    }
}

/// One AES-128 block encryption.
func encrypt(_ block: [UInt8], _ key: SymmetricKey) -> [UInt8] {
    var out = block
    // A 16-byte block and a 16-byte key cannot fail; keep the input on the impossible path.
    do { try AES.permute(&out, key: key) } catch { return block }
    return out
}

func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
    zip(a, b).map { $0 ^ $1 }
}

/// Cyclic left rotation of a 16-byte block by whole bytes (all Milenage r values are).
func rotate(_ x: [UInt8], byBytes n: Int) -> [UInt8] {
    (0..<16).map { x[($0 + n) % 16] }
}
